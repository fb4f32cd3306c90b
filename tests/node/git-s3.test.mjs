// git-s3.test.mjs - the git server with its repositories in S3 (s3rver on loopback, behind the
// proxy that verifies every request's SigV4 signature), driven by the real git client: a push
// large enough for a multipart upload lands as one object per generation (read back with the
// AWS SDK), the replaced generation is deleted, and a server that lost its working copies
// serves the same history from the bucket.
import { spawn, execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { S3Client, ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3';
import { test, skip, done, assert, eq, tmpdir, freePort, startS3rver, startProxy, BIN } from './blob-servers.mjs';

const BUCKET = 'git-test';
const dir = tmpdir('git-s3');
let s3rver, proxy, server;

// Asynchronous: the S3 proxy runs in this process and must keep answering while git runs.
async function git(args, cwd) {
  const { stdout } = await promisify(execFile)('git', args, {
    cwd,
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', HOME: dir },
    maxBuffer: 1 << 20,
  });
  return stdout;
}

async function startServer(dataDir) {
  const port = await freePort();
  const token = `tok_${crypto.randomBytes(12).toString('hex')}`;
  const env = {
    ...process.env,
    STOCKADE_API_TOKEN: token,
    RR_GIT_S3_BUCKET: BUCKET,
    RR_GIT_S3_REGION: 'us-east-1',
    RR_GIT_S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
    RR_GIT_S3_ACCESS_KEY_ID: 'S3RVER',
    RR_GIT_S3_SECRET_ACCESS_KEY: 'S3RVER',
    RR_GIT_S3_FORCE_PATH_STYLE: 'true',
  };
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--role', 'git-server'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 150; i++) {
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) break;
    } catch { /* not yet */ }
    if (child.exitCode !== null) throw new Error(`server exited: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.on('close', resolve);
    child.kill('SIGTERM');
  });
  return { base, token, stop, log: () => log, url: (n) => `http://x:${token}@127.0.0.1:${port}/git/${n}.git` };
}

const sdk = () => new S3Client({
  endpoint: `http://127.0.0.1:${s3rver.port}`, region: 'us-east-1', forcePathStyle: true,
  credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
});
const keys = async () => {
  const r = await sdk().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'git/' }));
  return (r.Contents || []).map((o) => o.Key).sort();
};

try {
  try {
    execFileSync('git', ['--version']);
  } catch {
    skip('git server on S3', 'git is not installed');
    process.exit(done());
  }
  s3rver = await startS3rver(path.join(dir, 's3'), [BUCKET]);
  proxy = await startProxy(s3rver.port);
  const data = path.join(dir, 'data');
  server = await startServer(data);
  const work = path.join(dir, 'work');

  await test('create a repository and push 12 MB to it (multipart upload to S3)', async () => {
    const r = await fetch(`${server.base}/api/v1/git/repos`, {
      method: 'POST', headers: { authorization: `Bearer ${server.token}` },
      body: JSON.stringify({ name: 'big' }),
    });
    eq(r.status, 201, 'create');
    fs.mkdirSync(work);
    await git(['init', '-q', '-b', 'main'], work);
    fs.writeFileSync(path.join(work, 'data.bin'), crypto.randomBytes(12 * 1024 * 1024));
    await git(['add', 'data.bin'], work);
    await git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'big'], work);
    await git(['push', '-q', server.url('big'), 'main'], work);
    eq(JSON.stringify(await keys()), JSON.stringify(['git/big/1.tar.zst']), 'one object for generation 1');
    const uploads = proxy.st.log.filter((e) => e.ua.startsWith('stockade/') && e.query.includes('uploadId'));
    assert(uploads.length >= 2, `a multipart upload (${uploads.length} part/complete requests)`);
    eq(proxy.st.rejected.length, 0, 'every request carried a valid SigV4 signature');
  });

  await test('the stored object is a zstd tar of the bare repository (AWS SDK read)', async () => {
    const r = await sdk().send(new GetObjectCommand({ Bucket: BUCKET, Key: 'git/big/1.tar.zst' }));
    const body = Buffer.from(await r.Body.transformToByteArray());
    eq(body.readUInt32LE(0), 0xfd2fb528, 'zstd magic');
    const f = path.join(dir, 'obj.tar.zst');
    fs.writeFileSync(f, body);
    const list = execFileSync('sh', ['-c', `zstd -dc '${f}' | tar -t`]).toString().split('\n');
    assert(list.includes('HEAD'), 'HEAD stored');
    assert(!list.some((n) => n === 'config' || n.startsWith('hooks')), 'no config, no hooks');
  });

  await test('a second push replaces the generation and deletes the old object', async () => {
    fs.writeFileSync(path.join(work, 'small.txt'), 'second\n');
    await git(['add', 'small.txt'], work);
    await git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'second'], work);
    await git(['push', '-q', server.url('big'), 'main'], work);
    eq(JSON.stringify(await keys()), JSON.stringify(['git/big/2.tar.zst']), 'only generation 2 is left');
  });

  await test('a server without its working copies clones the same history from S3', async () => {
    await server.stop();
    fs.rmSync(path.join(data, 'git'), { recursive: true, force: true });
    server = await startServer(data);
    const clone = path.join(dir, 'clone');
    await git(['clone', '-q', server.url('big'), clone], dir);
    eq(await git(['rev-parse', 'HEAD'], clone), await git(['rev-parse', 'HEAD'], work), 'same head');
    const a = crypto.createHash('sha256').update(fs.readFileSync(path.join(work, 'data.bin'))).digest('hex');
    const b = crypto.createHash('sha256').update(fs.readFileSync(path.join(clone, 'data.bin'))).digest('hex');
    eq(b, a, '12 MB file identical');
  });

  await test('deleting the repository deletes its objects', async () => {
    const r = await fetch(`${server.base}/api/v1/git/repos/big`, {
      method: 'DELETE', headers: { authorization: `Bearer ${server.token}` },
    });
    eq(r.status, 204, 'delete');
    eq(JSON.stringify(await keys()), '[]', 'bucket prefix empty');
  });
} finally {
  if (server) await server.stop();
  if (proxy) await proxy.stop?.();
  if (s3rver) await s3rver.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(done());
