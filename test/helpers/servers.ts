import net from 'node:net';

/**
 * Whether a scale-out server's test may run. Under CI the server must be there (.ci/run starts it),
 * so its absence fails the run; on a laptop without it the test is skipped, loudly.
 */
export async function serverAvailable(name: string, url: string): Promise<true | string> {
  const { hostname, port } = new URL(url);
  const reachable = await new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    socket.setTimeout(1500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
  if (reachable) return true;
  const reason = `${name} is not reachable at ${url}`;
  if (process.env.CI) throw new Error(`${reason}, and CI must test against it (.ci/run starts it)`);
  console.warn(`\n*** SKIPPING ${name} tests: ${reason}. Start it to run them (see README). ***\n`);
  return `SKIPPED: ${reason}`;
}
