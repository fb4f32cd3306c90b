// blob-azure.test.mjs - the Azure Blob backend against Azurite (started on a free loopback
// port, which checks every Shared Key signature): container creation, put/get/stat/list/delete
// with metadata and awkward names, a block-list upload of a large object, multi-page listings,
// a writer killed between Put Block and Put Block List, a wrong key, and a store that is down.
// A logging proxy in front of Azurite shows which REST operations were used.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  test, done, assert, eq, tmpdir, freePort, stockade, startAzurite, startProxy, AZURITE_KEY,
  azureClient,
} from './blob-servers.mjs';

const dir = tmpdir('blob-azure');
const azurite = await startAzurite(path.join(dir, 'data'));
const proxy = await startProxy(azurite.port, {}, false);
const CS = azurite.cs.replace(`127.0.0.1:${azurite.port}`, `127.0.0.1:${proxy.port}`);
const store = ['--azure', '--container', 'stockade-test', '--part-size', '2M'];
const blob = (args, opts = {}) =>
  stockade([...store, ...args], { ...opts, env: { AZURE_STORAGE_CONNECTION_STRING: CS, ...opts.env } });
const az = azureClient(azurite.port, 'stockade-test');
const azPut = async (name, body, meta = {}) => {
  const headers = { 'x-ms-blob-type': 'BlockBlob', 'Content-Type': 'application/octet-stream' };
  for (const [k, v] of Object.entries(meta)) headers[`x-ms-meta-${k}`] = v;
  const r = await az('PUT', name, { headers, body: Buffer.from(body) });
  eq(r.status, 201, `independent Put Blob ${name}: ${r.body}`);
};
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

try {
  await test('mb creates the container and is idempotent', async () => {
    let r = await blob(['mb']);
    eq(r.code, 0, r.stderr);
    r = await blob(['mb']);
    eq(r.code, 0, r.stderr);
  });

  await test('put/get/stat round trip with metadata and an awkward name', async () => {
    const key = 'dir one/naïve+key=%41 &(x)~.bin';
    const data = crypto.randomBytes(100000);
    const f = path.join(dir, 'small');
    fs.writeFileSync(f, data);
    let r = await blob(['put', key, f, '--meta', 'owner=alice', '--meta', 'build_id=42-x']);
    eq(r.code, 0, r.stderr);
    r = await blob(['get', key]);
    eq(r.code, 0, r.stderr);
    eq(sha(r.stdout), sha(data), 'bytes');
    r = await blob(['stat', key]);
    const j = JSON.parse(r.stdout.toString());
    eq(j.size, data.length, 'size');
    eq(j.meta.owner, 'alice', 'meta owner');
    eq(j.meta.build_id, '42-x', 'meta build_id');
    assert(j.mtime > 1600000000, 'mtime parsed');
  });

  await test('cross-check with an independent Shared Key client, both directions', async () => {
    // stockade wrote this in the previous test: read it with the other client
    const key = 'dir one/naïve+key=%41 &(x)~.bin';
    const got = await az('GET', key);
    eq(got.status, 200, `independent Get Blob: ${got.body}`);
    eq(got.body.length, 100000, 'length');
    eq(got.headers['x-ms-meta-owner'], 'alice', 'metadata owner');
    eq(got.headers['x-ms-meta-build_id'], '42-x', 'metadata build_id');
    // and the other way
    const data = crypto.randomBytes(54321);
    await azPut('from-js/ünï code.dat', data, { color: 'blue', x_y: 'z 1' });
    const r = await blob(['get', 'from-js/ünï code.dat']);
    eq(r.code, 0, r.stderr);
    eq(sha(r.stdout), sha(data), 'bytes');
    const j = JSON.parse((await blob(['stat', 'from-js/ünï code.dat'])).stdout.toString());
    eq(j.meta.color, 'blue', 'meta color');
    eq(j.meta.x_y, 'z 1', 'meta x_y');
  });

  await test('7 MiB object uploaded as blocks and committed with one block list', async () => {
    const data = crypto.randomBytes(7 * 1024 * 1024 + 1);
    const f = path.join(dir, 'big');
    fs.writeFileSync(f, data);
    const before = proxy.st.log.length;
    let r = await blob(['put', 'big/object.bin', f, '--meta', 'kind=blocks']);
    eq(r.code, 0, r.stderr);
    const seen = proxy.st.log.slice(before);
    eq(seen.filter((e) => /comp=block(&|$)/.test(e.query)).length, 4, 'Put Block requests (2 MiB blocks)');
    eq(seen.filter((e) => e.query.includes('comp=blocklist')).length, 1, 'one Put Block List');
    const got = await az('GET', 'big/object.bin');
    eq(sha(got.body), sha(data), 'bytes read by the independent client');
    eq(got.headers['x-ms-meta-kind'], 'blocks', 'metadata set by Put Block List');
    const bl = await az('GET', 'big/object.bin', { query: { comp: 'blocklist' } });
    eq((bl.body.toString().match(/<Block>/g) || []).length, 4, 'four committed blocks');
    const out = path.join(dir, 'big.out');
    r = await blob(['get', 'big/object.bin', out]);
    eq(r.code, 0, r.stderr);
    eq(sha(fs.readFileSync(out)), sha(data), 'bytes');
    r = await blob(['get', 'big/object.bin', '--max-size', '1M']);
    eq(r.code, 1, 'over the cap');
    assert(r.stderr.includes('larger than the 1048576 bytes allowed'), r.stderr);
  });

  await test('stream from a pipe (unknown size)', async () => {
    const data = crypto.randomBytes(5 * 1024 * 1024 + 5);
    let r = await blob(['put', 'big/piped.bin', '-'], { input: data });
    eq(r.code, 0, r.stderr);
    r = await blob(['get', 'big/piped.bin']);
    eq(sha(r.stdout), sha(data), 'bytes');
  });

  await test('listing across pages with markers, in order, by prefix', async () => {
    const keys = [];
    for (let i = 0; i < 7; i++) keys.push(`list/k${String(i).padStart(2, '0')}`);
    for (const k of keys) await azPut(k, k);
    const before = proxy.st.log.length;
    const r = await blob(['ls', 'list/', '--page-size', '2']);
    eq(r.code, 0, r.stderr);
    const got = r.stdout.toString().trim().split('\n').map((l) => l.split('\t')[0]);
    eq(got.join(','), keys.join(','), 'keys');
    const pages = proxy.st.log.slice(before).filter((e) => e.query.includes('comp=list'));
    eq(pages.length, 4, 'list requests');
    assert(pages.slice(1).every((e) => e.query.includes('marker=')), 'markers used');
    const all = await blob(['ls']);
    assert(all.stdout.toString().includes('big/object.bin\t7340033'), all.stdout.toString());
  });

  await test('delete, delete again, and get of a deleted key', async () => {
    eq((await blob(['rm', 'list/k00'])).code, 0, 'rm');
    eq((await blob(['rm', 'list/k00'])).code, 0, 'rm absent');
    const r = await blob(['get', 'list/k00']);
    eq(r.code, 1, 'exit code');
    assert(r.stderr.includes("cannot get blob 'list/k00': no such object"), r.stderr);
  });

  await test('writer killed between blocks and commit: new key absent, old version intact', async () => {
    eq((await blob(['put', 'crash/old', '-'], { input: 'OLD' })).code, 0, 'seed');
    for (const key of ['crash/new', 'crash/old']) {
      const before = proxy.st.log.length;
      let child;
      const run = blob(['put', key, '-'], { onSpawn: (p) => { child = p; } });
      child.stdin.write(crypto.randomBytes(5 * 1024 * 1024));
      const t0 = Date.now();
      while (proxy.st.log.slice(before).filter((e) => /comp=block(&|$)/.test(e.query)).length < 2 && Date.now() - t0 < 30000)
        await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 200));
      child.kill('SIGKILL');
      eq((await run).signal, 'SIGKILL', 'killed');
    }
    let r = await blob(['stat', 'crash/new']);
    eq(r.code, 1, 'new key absent');
    r = await blob(['get', 'crash/old']);
    eq(r.stdout.toString(), 'OLD', 'old content');
  });

  await test('wrong account key: Azure error code in the message, no retries', async () => {
    const bad = CS.replace(AZURITE_KEY, Buffer.from('x'.repeat(64)).toString('base64'));
    const before = proxy.st.log.length;
    const r = await blob(['ls'], { env: { AZURE_STORAGE_CONNECTION_STRING: bad } });
    eq(r.code, 1, 'exit code');
    assert(/HTTP 403 \(AuthorizationFailure/.test(r.stderr), r.stderr);
    eq(proxy.st.log.length - before, 1, 'not retried');
  });

  await test('transient 503s are retried; persistent ones give a bounded, clear error', async () => {
    proxy.st.fail503 = 1;
    let r = await blob(['get', 'crash/old']);
    eq(r.code, 0, r.stderr);
    eq(r.stdout.toString(), 'OLD', 'content after a retry');
    proxy.st.fail503 = 100;
    r = await blob(['get', 'crash/old', '--attempts', '2']);
    proxy.st.fail503 = 0;
    eq(r.code, 1, 'exit code');
    assert(/HTTP 503.*after 2 attempts/.test(r.stderr), r.stderr);
  });

  await test('store down: bounded retries, then a clear error', async () => {
    const dead = await freePort();
    const cs = CS.replace(`127.0.0.1:${proxy.port}`, `127.0.0.1:${dead}`);
    const r = await blob(['ls', '--attempts', '2'], { env: { AZURE_STORAGE_CONNECTION_STRING: cs } });
    eq(r.code, 1, 'exit code');
    assert(/List Blobs: .*connect.*after 2 attempts/i.test(r.stderr), r.stderr);
  });

  await test('bad connection string: the message shows the expected format', async () => {
    const r = await blob(['ls'], { env: { AZURE_STORAGE_CONNECTION_STRING: 'nonsense' } });
    eq(r.code, 1, 'exit code');
    assert(r.stderr.includes('AccountName=..'), r.stderr);
  });
} finally {
  await proxy.stop();
  await azurite.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(done());
