// The part of aws4's API that the S3 blob store uses (the package ships no types, and @types/aws4
// would be a dependency for three fields).
declare module 'aws4' {
  export interface Aws4Request {
    host?: string;
    port?: number;
    method?: string;
    path?: string;
    service?: string;
    region?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
  }
  export interface Aws4Credentials {
    accessKeyId: string;
    secretAccessKey: string;
    sessionToken?: string;
  }
  /** Adds the SigV4 headers (Authorization, X-Amz-Date, Host) to `request` in place and returns it. */
  export function sign<T extends Aws4Request>(request: T, credentials?: Aws4Credentials): T & { headers: Record<string, string> };
  const aws4: { sign: typeof sign };
  export default aws4;
}
