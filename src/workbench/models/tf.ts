import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

/**
 * The one module that chooses TensorFlow.js's backend. tfjs-node cannot be installed here (its
 * install script downloads a native library), so models run on the WebAssembly backend (SIMD, one
 * thread), which is 1.5 to 4 times faster than the pure-JS `cpu` backend on our models and gives the
 * same results on every machine. Every other module imports `tf` from here, after `tensorflow()`.
 */
let ready: Promise<typeof tf> | undefined;

export function tensorflow(): Promise<typeof tf> {
  return (ready ??= (async () => {
    if (tf.getBackend() !== 'wasm') {
      const ok = await tf.setBackend('wasm').catch(() => false);
      if (!ok) {
        await tf.setBackend('cpu');
        process.emitWarning('TensorFlow.js: the wasm backend did not start; training on the slower cpu backend');
      }
    }
    await tf.ready();
    return tf;
  })());
}

export { tf };
