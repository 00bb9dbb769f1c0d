// The part of s3rver's API the blob-store tests use (it ships no types).
declare module 's3rver' {
  interface S3rverOptions {
    port?: number;
    address?: string;
    silent?: boolean;
    directory: string;
    configureBuckets?: { name: string }[];
  }
  export default class S3rver {
    constructor(options: S3rverOptions);
    run(): Promise<{ address: string; port: number }>;
    close(): Promise<void>;
  }
}

// s3rver's object store: the test server replaces its putObject.
declare module 's3rver/lib/stores/filesystem.js' {
  export interface StoredObject {
    bucket: string;
    key: string;
    content: Buffer | AsyncIterable<Uint8Array>;
    metadata: Record<string, string>;
  }
  export default class FilesystemStore {
    getResourcePath(bucket: string, key: string, resource: string): string;
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5: string): Promise<void>;
    putObject(object: StoredObject): Promise<{ size: number; md5: string }>;
  }
}
