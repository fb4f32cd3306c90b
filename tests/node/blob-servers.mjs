// blob-servers.mjs - shared pieces of the blob storage tests: TAP output, running the stockade
// binary, starting s3rver and Azurite on free loopback ports, and an S3 front proxy that
// verifies every request's SigV4 signature (s3rver itself does not check V4 signatures) with
// the AWS SDK's own signer, records what it saw, and can inject faults.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignatureV4 } from '@smithy/signature-v4';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = process.env.STOCKADE_ROOT || path.resolve(here, '../..');
export const BIN = process.env.STOCKADE_BIN || path.join(ROOT, 'build/stockade');

// ---- TAP ---------------------------------------------------------------------------------
let n = 0;
let failed = 0;
export async function test(name, fn) {
  n++;
  const t0 = Date.now();
  try {
    await fn();
    if (process.env.BLOB_TEST_TIMING) console.error(`# ${name}: ${Date.now() - t0} ms`);
    console.log(`ok ${n} - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok ${n} - ${name}`);
    for (const line of String(e && e.stack ? e.stack : e).split('\n').slice(0, 12))
      console.log(`#   ${line}`);
  }
}
export function skip(name, why) {
  n++;
  console.log(`ok ${n} - ${name} # SKIP ${why}`);
}
export function done() {
  console.log(`1..${n}`);
  return failed === 0 ? 0 : 1;
}
export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}
export function eq(a, b, msg) {
  if (a !== b) throw new Error(`${msg}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`);
}

export function tmpdir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `stockade-${tag}-`));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// ---- the binary ----------------------------------------------------------------------------
// Run `stockade blob ...`; resolves {code, stdout (Buffer), stderr (string)}.
export function stockade(args, { input, env, onSpawn } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, ['blob', ...args], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out = [];
    let err = '';
    p.stdout.on('data', (d) => out.push(d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err }),
    );
    p.stdin.on('error', () => {});
    if (onSpawn) onSpawn(p);
    else if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
  });
}

// ---- servers -------------------------------------------------------------------------------
function waitForLine(child, re, what, ms = 30000) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${buf}`)), ms);
    const onData = (d) => {
      buf += d;
      const m = buf.match(re);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}): ${buf}`));
    });
  });
}

function stopper(child) {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
    });
}

// s3rver (with the legacy OpenSSL provider: it encrypts continuation tokens with DES).
export async function startS3rver(dir, buckets = []) {
  const port = await freePort();
  const args = [
    '--openssl-legacy-provider',
    path.join(here, 'node_modules/s3rver/bin/s3rver.js'),
    '-d', dir, '-a', '127.0.0.1', '-p', String(port), '-s',
  ];
  for (const b of buckets) args.push('--configure-bucket', b);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await waitForLine(child, /listening on [^:]+:(\d+)/, 's3rver');
  return { port, stop: stopper(child), child };
}

export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export async function startAzurite(dir) {
  const port = await freePort();
  const child = spawn(
    path.join(here, 'node_modules/.bin/azurite-blob'),
    ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', dir,
      '--silent', '--skipApiVersionCheck', '--loose'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // --silent prints nothing: poll the port.
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error('azurite exited');
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() - t0 > 30000) throw new Error('azurite did not start');
    await new Promise((r) => setTimeout(r, 150));
  }
  const cs = `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${AZURITE_KEY};` +
    `BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`;
  return { port, cs, stop: stopper(child), child };
}

// ---- the verifying S3 proxy ------------------------------------------------------------------
class Sha256 {
  constructor(secret) {
    this.h = secret ? crypto.createHmac('sha256', Buffer.from(secret)) : crypto.createHash('sha256');
  }
  update(d) { this.h.update(typeof d === 'string' ? Buffer.from(d) : d); }
  async digest() { return new Uint8Array(this.h.digest()); }
}

function parseAuth(h) {
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(h || '');
  if (!m) return null;
  return { ak: m[1], date: m[2], region: m[3], signed: m[4].split(';'), sig: m[5] };
}

async function verify(req, body, secrets) {
  const a = parseAuth(req.headers.authorization);
  if (!a) return `unparsable Authorization '${req.headers.authorization}'`;
  const secret = secrets[a.ak];
  if (!secret) return `unknown access key ${a.ak}`;
  const want = req.headers['x-amz-content-sha256'];
  if (!want) return 'no x-amz-content-sha256';
  if (want !== 'UNSIGNED-PAYLOAD') {
    const got = crypto.createHash('sha256').update(body).digest('hex');
    if (got !== want) return `payload hash mismatch ${want} != ${got}`;
  }
  const u = new URL(req.url, 'http://x');
  const query = {};
  for (const [k, v] of u.searchParams) query[k] = v;
  const headers = {};
  for (const name of a.signed) {
    if (req.headers[name] === undefined) return `signed header '${name}' not sent`;
    headers[name] = req.headers[name];
  }
  const d = req.headers['x-amz-date'];
  const signingDate = new Date(
    `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}T${d.slice(9, 11)}:${d.slice(11, 13)}:${d.slice(13, 15)}Z`,
  );
  const signer = new SignatureV4({
    credentials: { accessKeyId: a.ak, secretAccessKey: secret },
    region: a.region, service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: true,
  });
  const signed = await signer.sign(
    { method: req.method, protocol: 'http:', hostname: '127.0.0.1', path: u.pathname, query, headers, body },
    { signingDate, signingRegion: a.region, signingService: 's3' },
  );
  const again = parseAuth(signed.headers.authorization);
  if (!again || again.sig !== a.sig) return 'SignatureDoesNotMatch';
  return null;
}

// faults: {fail503: n} answers the next n requests with 503 SlowDown; {stall: true} never answers.
// verify=false: only log and inject faults (for Azurite, which checks Shared Key itself).
export async function startProxy(targetPort, secrets = { S3RVER: 'S3RVER' }, verifyS3 = true) {
  const st = { log: [], verified: 0, rejected: [], fail503: 0, stall: false, stalled: [] };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const u = new URL(req.url, 'http://x');
      const entry = { method: req.method, path: decodeURIComponent(u.pathname), query: u.search, ua: req.headers['user-agent'] || '' };
      st.log.push(entry);
      if (st.stall) { st.stalled.push(res); return; }
      if (st.fail503 > 0) {
        st.fail503--;
        res.writeHead(503, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
        return;
      }
      let problem;
      if (verifyS3) {
        try { problem = await verify(req, body, secrets); } catch (e) { problem = String(e); }
      }
      if (problem) {
        st.rejected.push({ ...entry, problem });
        res.writeHead(403, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><Message>${problem.replace(/[<&]/g, '')}</Message></Error>`);
        return;
      }
      st.verified++;
      const up = http.request(
        { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
        (ur) => { res.writeHead(ur.statusCode, ur.headers); ur.pipe(res); },
      );
      up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
      up.end(body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    port, st,
    stop: () => new Promise((r) => {
      for (const res of st.stalled) res.destroy();
      server.closeAllConnections?.();
      server.close(() => r());
    }),
  };
}

// ---- an independent Azure Blob client (Shared Key written from the REST documentation) -------
// Used to seed and to read back objects, so the C backend is checked against a second signer.
export function azureClient(port, container, account = 'devstoreaccount1', key = AZURITE_KEY) {
  const keyBytes = Buffer.from(key, 'base64');
  const enc = (k) => k.split('/').map(encodeURIComponent).join('/')
    .replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return function request(method, blobName, { query = {}, headers = {}, body } = {}) {
    const path = `/${account}/${container}${blobName ? '/' + enc(blobName) : ''}`;
    const h = { 'x-ms-date': new Date().toUTCString(), 'x-ms-version': '2021-08-06', ...headers };
    const len = body ? body.length : 0;
    const xms = Object.keys(h).filter((k) => k.toLowerCase().startsWith('x-ms-'))
      .map((k) => [k.toLowerCase(), String(h[k]).trim()]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const q = Object.keys(query).sort();
    const sts = [method, '', '', len ? String(len) : '', '', h['Content-Type'] || '', '', '', '', '', '', '']
      .join('\n') + '\n' + xms.map(([k, v]) => `${k}:${v}\n`).join('') +
      `/${account}${path}` + q.map((k) => `\n${k.toLowerCase()}:${query[k]}`).join('');
    const sig = crypto.createHmac('sha256', keyBytes).update(sts, 'utf8').digest('base64');
    h.Authorization = `SharedKey ${account}:${sig}`;
    if (len) h['Content-Length'] = String(len);
    const qs = q.length ? '?' + q.map((k) => `${k}=${encodeURIComponent(query[k])}`).join('&') : '';
    return new Promise((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port, method, path: path + qs, headers: h }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      r.on('error', reject);
      r.end(body);
    });
  };
}
