/** The blob store's public surface: the interface, the key rules, the errors and the two implementations. */
export { BlobKeyError, BlobStoreError, MAX_KEY_LENGTH, blobKey, blobKeySchema, blobPrefix, type BlobBody, type BlobStore } from './store.js';
export { DirectoryBlobStore } from './directory.js';
export { S3BlobStore, s3BlobStoreConfig, type S3BlobStoreConfig } from './s3.js';
export { openBlobStore } from './open.js';
