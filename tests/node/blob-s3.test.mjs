// blob-s3.test.mjs - the S3 backend against a real S3-protocol server (s3rver on a free loopback
// port), cross-checked with the official AWS SDK for JavaScript: objects written by
// `stockade blob` are read back by the SDK and the other way round (names, bytes, metadata),
// including a multipart-sized object and listings of several pages. Every request stockade
// sends passes through a proxy that verifies its SigV4 signature and payload hash with the
// SDK's signer. Also: retries and clear errors when the server is down, slow or failing, and a
// writer killed mid-upload leaving no object.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  S3Client, GetObjectCommand, PutObjectCommand, HeadObjectCommand, ListObjectsV2Command,
  CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand,
  DeleteObjectCommand,
} from '@aws-sdk/client-s3';
import {
  test, done, assert, eq, tmpdir, freePort, stockade, startS3rver, startProxy,
} from './blob-servers.mjs';

const BUCKET = 'stockade-test';
const dir = tmpdir('blob-s3');
const s3rver = await startS3rver(path.join(dir, 'data'), [BUCKET]);
const proxy = await startProxy(s3rver.port);
const ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
const store = ['--s3-endpoint', `http://127.0.0.1:${proxy.port}`, '--bucket', BUCKET,
  '--region', 'us-east-1', '--part-size', '5M'];
const sdk = new S3Client({
  endpoint: `http://127.0.0.1:${proxy.port}`, region: 'us-east-1', forcePathStyle: true,
  credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
});
const blob = (args, opts = {}) => stockade([...store, ...args], { ...opts, env: { ...ENV, ...opts.env } });
const sdkBytes = async (key) => {
  const r = await sdk.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return { body: Buffer.from(await r.Body.transformToByteArray()), meta: r.Metadata, len: r.ContentLength };
};
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const ourRequests = () => proxy.st.log.filter((e) => e.ua.startsWith('stockade/'));

try {
  await test('stockade put -> SDK get: odd key, bytes and metadata identical', async () => {
    const key = 'dir one/naïve+key=%41 &(x)~.bin';
    const data = crypto.randomBytes(70000);
    const f = path.join(dir, 'small');
    fs.writeFileSync(f, data);
    const r = await blob(['put', key, f, '--meta', 'owner=alice', '--meta', 'build_id=42-x']);
    eq(r.code, 0, `put failed: ${r.stderr}`);
    const got = await sdkBytes(key);
    eq(sha(got.body), sha(data), 'bytes');
    eq(got.meta.owner, 'alice', 'metadata owner');
    eq(got.meta.build_id, '42-x', 'metadata build_id');
    eq(Object.keys(got.meta).length, 2, 'no extra metadata');
  });

  await test('SDK put -> stockade get and stat: bytes and metadata identical', async () => {
    const key = 'from-sdk/ünïcode key.dat';
    const data = crypto.randomBytes(123457);
    await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: data, Metadata: { color: 'blue', 'x-y': 'z 1' } }));
    const r = await blob(['get', key]);
    eq(r.code, 0, `get failed: ${r.stderr}`);
    eq(sha(r.stdout), sha(data), 'bytes');
    const s = await blob(['stat', key]);
    eq(s.code, 0, s.stderr);
    const j = JSON.parse(s.stdout.toString());
    eq(j.size, data.length, 'size');
    eq(j.meta.color, 'blue', 'meta color');
    eq(j.meta['x-y'], 'z 1', 'meta x-y');
    assert(j.etag && !j.etag.includes('"'), 'etag without quotes');
  });

  await test('20 MiB object: stockade multipart upload, SDK reads it back', async () => {
    const data = crypto.randomBytes(20 * 1024 * 1024);
    const f = path.join(dir, 'big');
    fs.writeFileSync(f, data);
    const before = proxy.st.log.length;
    const r = await blob(['put', 'big/object.bin', f, '--meta', 'kind=multipart']);
    eq(r.code, 0, `put failed: ${r.stderr}`);
    const seen = proxy.st.log.slice(before);
    eq(seen.filter((e) => e.query.includes('partNumber=')).length, 4, 'UploadPart requests (5 MiB parts)');
    assert(seen.some((e) => e.method === 'POST' && e.query.includes('uploads')), 'CreateMultipartUpload');
    assert(seen.some((e) => e.method === 'POST' && e.query.includes('uploadId=')), 'CompleteMultipartUpload');
    const got = await sdkBytes('big/object.bin');
    eq(got.len, data.length, 'length');
    eq(sha(got.body), sha(data), 'bytes');
    eq(got.meta.kind, 'multipart', 'metadata on a multipart object');
    const capped = await blob(['get', 'big/object.bin', '--max-size', '1M']);
    eq(capped.code, 1, 'over the cap');
    assert(capped.stderr.includes('larger than the 1048576 bytes allowed'), capped.stderr);
  });

  await test('an object streamed from a pipe (unknown size) is also multipart', async () => {
    const data = crypto.randomBytes(11 * 1024 * 1024 + 3);
    const r = await blob(['put', 'big/piped.bin', '-'], { input: data });
    eq(r.code, 0, `put failed: ${r.stderr}`);
    const got = await sdkBytes('big/piped.bin');
    eq(sha(got.body), sha(data), 'bytes');
  });

  await test('SDK multipart upload -> stockade get to a file', async () => {
    const part1 = crypto.randomBytes(5 * 1024 * 1024);
    const part2 = crypto.randomBytes(1024 * 1024 + 11);
    const key = 'big/sdk-multipart.bin';
    const c = await sdk.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, Metadata: { src: 'sdk' } }));
    const p1 = await sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: c.UploadId, PartNumber: 1, Body: part1 }));
    const p2 = await sdk.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: c.UploadId, PartNumber: 2, Body: part2 }));
    await sdk.send(new CompleteMultipartUploadCommand({
      Bucket: BUCKET, Key: key, UploadId: c.UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] },
    }));
    const out = path.join(dir, 'sdk-mp.out');
    const r = await blob(['get', key, out]);
    eq(r.code, 0, `get failed: ${r.stderr}`);
    eq(sha(fs.readFileSync(out)), sha(Buffer.concat([part1, part2])), 'bytes');
  });

  await test('listing across several pages, both directions', async () => {
    const keys = [];
    for (let i = 0; i < 11; i++) keys.push(`list/k${String(i).padStart(3, '0')}`);
    // most written by the SDK (fast), two by stockade
    for (const [i, k] of keys.entries()) {
      if (i !== 3 && i !== 8) await sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: k }));
      else eq((await blob(['put', k, '-'], { input: k })).code, 0, `put ${k}`);
    }
    const before = proxy.st.log.length;
    const r = await blob(['ls', 'list/', '--page-size', '3']);
    eq(r.code, 0, r.stderr);
    const lines = r.stdout.toString().trim().split('\n');
    eq(lines.length, 11, 'listed count');
    eq(lines.map((l) => l.split('\t')[0]).join(','), keys.join(','), 'keys in order');
    eq(lines[0].split('\t')[1], '9', 'size column');
    const pages = proxy.st.log.slice(before).filter((e) => e.query.includes('list-type=2'));
    eq(pages.length, 4, 'list requests (4 pages of at most 3)');
    assert(pages.slice(1).every((e) => e.query.includes('continuation-token=')), 'continuation tokens used');
    // SDK pages through stockade-written keys the same way
    let token;
    const sdkKeys = [];
    do {
      const p = await sdk.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'list/', MaxKeys: 4, ContinuationToken: token }));
      for (const o of p.Contents || []) sdkKeys.push(o.Key);
      token = p.IsTruncated ? p.NextContinuationToken : undefined;
    } while (token);
    eq(sdkKeys.join(','), keys.join(','), 'SDK listing');
    const j = await blob(['ls', 'list/k00', '--json']);
    eq(j.stdout.toString().trim().split('\n').length, 10, 'prefix narrows the listing');
    assert(JSON.parse(j.stdout.toString().split('\n')[0]).etag, 'json listing has etags');
  });

  await test('delete: stockade rm is seen by the SDK; SDK delete is seen by stockade', async () => {
    eq((await blob(['rm', 'list/k001'])).code, 0, 'rm');
    let gone = false;
    try { await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'list/k001' })); } catch (e) { gone = e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404; }
    assert(gone, 'SDK sees the key gone');
    eq((await blob(['rm', 'list/k001'])).code, 0, 'removing an absent key succeeds');
    await sdk.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'list/k002' }));
    const r = await blob(['get', 'list/k002']);
    eq(r.code, 1, 'get of a deleted key fails');
    assert(r.stderr.includes("cannot get blob 'list/k002': no such object"), r.stderr);
  });

  await test('every request stockade sent carried a valid SigV4 signature and payload hash', async () => {
    eq(proxy.st.rejected.length, 0, `rejected: ${JSON.stringify(proxy.st.rejected.slice(0, 3))}`);
    assert(ourRequests().length > 20, `requests were checked (${ourRequests().length})`);
  });

  await test('wrong secret: clear SignatureDoesNotMatch error, no retries', async () => {
    const before = proxy.st.log.length;
    const r = await blob(['get', 'big/object.bin'], { env: { AWS_SECRET_ACCESS_KEY: 'wrong' } });
    eq(r.code, 1, 'exit code');
    assert(r.stderr.includes('SignatureDoesNotMatch'), r.stderr);
    eq(proxy.st.log.length - before, 1, 'a 403 is not retried');
    proxy.st.rejected.length = 0;
  });

  await test('server errors (503) are retried with backoff, then succeed', async () => {
    proxy.st.fail503 = 2;
    const before = proxy.st.log.length;
    const r = await blob(['put', 'retry/x', '-'], { input: 'payload' });
    eq(r.code, 0, r.stderr);
    eq(proxy.st.log.length - before, 3, 'two 503s then success');
    eq((await sdkBytes('retry/x')).body.toString(), 'payload', 'object stored once, intact');
  });

  await test('persistent 503: bounded attempts and a message naming the S3 error', async () => {
    proxy.st.fail503 = 100;
    const before = proxy.st.log.length;
    const r = await blob(['stat', 'retry/x', '--attempts', '3']);
    proxy.st.fail503 = 0;
    eq(r.code, 1, 'exit code');
    eq(proxy.st.log.length - before, 3, 'exactly 3 attempts');
    assert(/HTTP 503.*after 3 attempts/.test(r.stderr), r.stderr);
  });

  await test('server down: bounded retries, then an error naming the connection failure', async () => {
    const dead = await freePort();
    const r = await stockade(['--s3-endpoint', `http://127.0.0.1:${dead}`, '--bucket', BUCKET,
      '--attempts', '3', 'ls'], { env: ENV });
    eq(r.code, 1, 'exit code');
    assert(/ListObjectsV2: .*(connect|Connection refused).*after 3 attempts/i.test(r.stderr), r.stderr);
  });

  await test('slow server: the request timeout fires and the error says so', async () => {
    proxy.st.stall = true;
    const r = await blob(['get', 'retry/x', '--timeout-ms', '400', '--attempts', '2']);
    proxy.st.stall = false;
    eq(r.code, 1, 'exit code');
    assert(/timed out.*after 2 attempts/i.test(r.stderr), r.stderr);
  });

  await test('writer killed mid multipart upload: no object, and an old version survives', async () => {
    // an existing object must keep its content; a new key must stay absent
    eq((await blob(['put', 'crash/old', '-'], { input: 'OLD' })).code, 0, 'seed old');
    for (const key of ['crash/new', 'crash/old']) {
      const before = proxy.st.log.length;
      let child;
      const run = blob(['put', key, '-'], { onSpawn: (p) => { child = p; } });
      child.stdin.write(crypto.randomBytes(11 * 1024 * 1024)); // two parts' worth, then stall
      const t0 = Date.now();
      while (!proxy.st.log.slice(before).some((e) => e.query.includes('partNumber=2')) && Date.now() - t0 < 30000)
        await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 200));
      child.kill('SIGKILL');
      const res = await run;
      eq(res.signal, 'SIGKILL', 'writer was killed');
    }
    let absent = false;
    try { await sdk.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'crash/new' })); } catch (e) { absent = e.$metadata?.httpStatusCode === 404; }
    assert(absent, 'new key absent after the crash');
    eq((await sdkBytes('crash/old')).body.toString(), 'OLD', 'old version intact');
  });

  await test('mb is idempotent; bucket creation through stockade works', async () => {
    eq((await blob(['mb'])).code, 0, 'existing bucket');
    const r = await stockade(['--s3-endpoint', `http://127.0.0.1:${proxy.port}`, '--bucket', 'fresh-bucket', 'mb'], { env: ENV });
    eq(r.code, 0, r.stderr);
    eq((await stockade(['--s3-endpoint', `http://127.0.0.1:${proxy.port}`, '--bucket', 'fresh-bucket', 'put', 'k', '-'], { env: ENV, input: 'v' })).code, 0, 'put in new bucket');
  });

  await test('--config with RR_GIT_S3_* / RR_DEFAULT_S3_*: per-subsystem prefixes in one bucket', async () => {
    const cfg = path.join(dir, 'stockade.yaml');
    fs.writeFileSync(cfg, `dataDir: ${path.join(dir, 'cfgdata')}\njwtSecret: 0123456789abcdef0123456789abcdef\n`);
    const env = {
      RR_DEFAULT_S3_BUCKET: BUCKET, RR_DEFAULT_S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
      RR_DEFAULT_S3_ACCESS_KEY_ID: 'S3RVER', RR_DEFAULT_S3_SECRET_ACCESS_KEY: 'S3RVER',
      RR_DEFAULT_S3_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '',
    };
    let r = await stockade(['--config', cfg, 'put', 'repo/HEAD', '-'], { env, input: 'ref: main' });
    eq(r.code, 0, r.stderr);
    r = await stockade(['--config', cfg, '--subsystem', 'snapshots', 'put', 'sb/1', '-'], { env, input: 'snap' });
    eq(r.code, 0, r.stderr);
    eq((await sdkBytes('git/repo/HEAD')).body.toString(), 'ref: main', 'git prefix');
    eq((await sdkBytes('snapshots/sb/1')).body.toString(), 'snap', 'snapshots prefix');
    r = await stockade(['--config', cfg, 'ls'], { env });
    eq(r.stdout.toString(), 'repo/HEAD\t9\n', 'listing is relative to the prefix');
    // the per-subsystem bucket variable wins over the default one
    r = await stockade(['--config', cfg, 'ls', '--attempts', '1'], { env: { ...env, RR_GIT_S3_BUCKET: 'no-such-bucket' } });
    eq(r.code, 1, 'missing bucket');
    assert(r.stderr.includes('NoSuchBucket'), r.stderr);
  });

  await test('usage errors exit 2 with a message saying what to do', async () => {
    let r = await blob(['put', '../escape', '-'], { input: 'x' });
    eq(r.code, 2, 'bad key');
    assert(r.stderr.includes("'.' and '..' segments are not allowed"), r.stderr);
    r = await stockade(['ls']);
    eq(r.code, 2, 'no store');
    assert(r.stderr.includes('--fs DIR'), r.stderr);
    r = await stockade(['--s3-endpoint', 'http://127.0.0.1:1', '--bucket', BUCKET, 'ls'], { env: { AWS_ACCESS_KEY_ID: 'AK', AWS_SECRET_ACCESS_KEY: '' } });
    eq(r.code, 1, 'half the credentials');
    assert(r.stderr.includes('AWS_ACCESS_KEY_ID'), r.stderr);
  });
} finally {
  sdk.destroy();
  await proxy.stop();
  await s3rver.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(done());
