/*
 * engine-js-host.c - the JavaScript host API: console, timers, TextEncoder/TextDecoder,
 * atob/btoa, crypto.getRandomValues/randomUUID, structuredClone and CommonJS require().
 *
 * Most of it is JavaScript (PRELUDE below), evaluated once in the zygote's global context; it
 * talks to C through a small `__host` object that the prelude captures in a closure and then
 * deletes from the global scope:
 *   __host.write(isErr, text)       captured output (capped; overflow ends the execution)
 *   __host.now()                    monotonic milliseconds
 *   __host.sleep(ms)                block (timers that are not due yet)
 *   __host.random(n)                n random bytes as an array (getrandom)
 *   __host.readFile(path)           file text, or null; only under the modules dir
 *   __host.stat(path)               1 file, 2 dir, 0 absent; only under the modules dir
 *   __host.compile(src, url)        evaluate src with sourceURL url (module wrappers)
 * Math.random is the host's own (h_math_random): JavaScriptCore keeps its generator's state in
 * the global object, which every child inherits from the zygote, so every execution would draw
 * the same sequence. Ours is xoshiro256** seeded from getrandom in each child before any code
 * runs (engine__js_host_reseed, called from engine__js_after_fork).
 * Timers run to completion inside the execution: after the code's promise settles the driver
 * keeps firing due timers (sleeping until the next) until none is left.
 */
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/engine-internal.h"

static char host_modules_dir[4096];

static const char PRELUDE[] =
    "(function(host){\n"
    "'use strict';\n"
    "const G = globalThis;\n"
    "const stringify = JSON.stringify, parse = JSON.parse, PromiseResolve = "
    "Promise.resolve.bind(Promise);\n"
    "const PromiseThen = Promise.prototype.then;\n"
    "function fmt(v, depth, seen) {\n"
    "  if (typeof v === 'string') return depth === 0 ? v : JSON.stringify(v);\n"
    "  if (v === undefined) return 'undefined';\n"
    "  if (v === null) return 'null';\n"
    "  if (typeof v === 'function') return '[Function: ' + (v.name || 'anonymous') + ']';\n"
    "  if (typeof v === 'symbol' || typeof v === 'bigint') return typeof v === 'bigint' ? v + 'n' "
    ": v.toString();\n"
    "  if (typeof v !== 'object') return String(v);\n"
    "  if (v instanceof Error) return v.stack ? v.name + ': ' + v.message + '\\n' + v.stack : "
    "String(v);\n"
    "  if (seen.indexOf(v) >= 0) return '[Circular]';\n"
    "  if (depth > 3) return Array.isArray(v) ? '[Array]' : '[Object]';\n"
    "  seen = seen.concat([v]);\n"
    "  if (Array.isArray(v)) return '[ ' + v.map(x => fmt(x, depth + 1, seen)).join(', ') + ' ]';\n"
    "  if (v instanceof Date) return isNaN(v) ? 'Invalid Date' : v.toISOString();\n"
    "  if (v instanceof Map) return 'Map(' + v.size + ') { ' + Array.from(v).map(([k, x]) => "
    "fmt(k, depth + 1, seen) + ' => ' + fmt(x, depth + 1, seen)).join(', ') + ' }';\n"
    "  if (v instanceof Set) return 'Set(' + v.size + ') { ' + Array.from(v).map(x => fmt(x, depth "
    "+ 1, seen)).join(', ') + ' }';\n"
    "  const keys = Object.keys(v);\n"
    "  if (keys.length === 0) return '{}';\n"
    "  return '{ ' + keys.map(k => (/^[A-Za-z_$][\\w$]*$/.test(k) ? k : JSON.stringify(k)) + ': ' "
    "+ fmt(v[k], depth + 1, seen)).join(', ') + ' }';\n"
    "}\n"
    "function format(args) {\n"
    "  let out = [];\n"
    "  let i = 0;\n"
    "  if (typeof args[0] === 'string' && args.length > 1 && /%[sdifjoO%]/.test(args[0])) {\n"
    "    i = 1;\n"
    "    out.push(args[0].replace(/%([sdifjoO%])/g, (m, c) => {\n"
    "      if (c === '%') return '%';\n"
    "      if (i >= args.length) return m;\n"
    "      const a = args[i++];\n"
    "      if (c === 's') return typeof a === 'string' ? a : fmt(a, 1, []);\n"
    "      if (c === 'd' || c === 'i') return String(c === 'i' ? parseInt(a) : Number(a));\n"
    "      if (c === 'f') return String(parseFloat(a));\n"
    "      if (c === 'j') { try { return JSON.stringify(a); } catch (e) { return '[Circular]'; } "
    "}\n"
    "      return fmt(a, 1, []);\n"
    "    }));\n"
    "  }\n"
    "  for (; i < args.length; i++) out.push(fmt(args[i], 0, []));\n"
    "  return out.join(' ') + '\\n';\n"
    "}\n"
    "const counts = new Map(), timers = new Map();\n"
    "const console = {\n"
    "  log: (...a) => host.write(false, format(a)),\n"
    "  info: (...a) => host.write(false, format(a)),\n"
    "  debug: (...a) => host.write(false, format(a)),\n"
    "  trace: (...a) => host.write(true, format(a)),\n"
    "  warn: (...a) => host.write(true, format(a)),\n"
    "  error: (...a) => host.write(true, format(a)),\n"
    "  dir: (v) => host.write(false, fmt(v, 1, []) + '\\n'),\n"
    "  table: (v) => host.write(false, fmt(v, 1, []) + '\\n'),\n"
    "  assert: (c, ...a) => { if (!c) host.write(true, 'Assertion failed' + (a.length ? ': ' + "
    "format(a) : '\\n')); },\n"
    "  count: (l = 'default') => { const n = (counts.get(l) || 0) + 1; counts.set(l, n); "
    "host.write(false, l + ': ' + n + '\\n'); },\n"
    "  countReset: (l = 'default') => counts.delete(l),\n"
    "  time: (l = 'default') => timers.set(l, host.now()),\n"
    "  timeEnd: (l = 'default') => { const t = timers.get(l); if (t !== undefined) { "
    "host.write(false, l + ': ' + (host.now() - t).toFixed(3) + 'ms\\n'); timers.delete(l); } },\n"
    "  timeLog: (l = 'default', ...a) => { const t = timers.get(l); if (t !== undefined) "
    "host.write(false, l + ': ' + (host.now() - t).toFixed(3) + 'ms' + (a.length ? ' ' + format(a) "
    ": '\\n')); },\n"
    "  group: (...a) => { if (a.length) host.write(false, format(a)); },\n"
    "  groupEnd: () => {},\n"
    "};\n"
    "Object.defineProperty(G, 'console', {value: console, writable: true, configurable: true});\n"
    /* timers */
    "let nextId = 1; const queue = new Map();\n"
    "function addTimer(fn, ms, args, repeat) {\n"
    "  if (typeof fn !== 'function') throw new TypeError('the callback must be a function');\n"
    "  ms = Math.max(0, Number(ms) || 0);\n"
    "  const id = nextId++;\n"
    "  queue.set(id, {fn, ms, args, repeat, at: host.now() + ms, seq: id});\n"
    "  return id;\n"
    "}\n"
    "G.setTimeout = (fn, ms, ...args) => addTimer(fn, ms, args, false);\n"
    "G.setInterval = (fn, ms, ...args) => addTimer(fn, ms, args, true);\n"
    "G.setImmediate = (fn, ...args) => addTimer(fn, 0, args, false);\n"
    "G.clearTimeout = G.clearInterval = G.clearImmediate = (id) => { queue.delete(id); };\n"
    "G.queueMicrotask = (fn) => { Promise.resolve().then(fn); };\n"
    "function step() {\n"
    "  if (queue.size === 0) return false;\n"
    "  let best = null;\n"
    "  for (const t of queue.values()) if (best === null || t.at < best.at || (t.at === best.at && "
    "t.seq < best.seq)) best = t;\n"
    "  const wait = best.at - host.now();\n"
    "  if (wait > 0) host.sleep(wait);\n"
    "  const id = best.seq;\n"
    "  if (best.repeat) { best.at = host.now() + Math.max(1, best.ms); } else queue.delete(id);\n"
    "  best.fn.apply(undefined, best.args);\n"
    "  return true;\n"
    "}\n"
    /* base64 */
    "const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';\n"
    "G.btoa = function btoa(s) {\n"
    "  s = String(s); let out = '';\n"
    "  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 255) { const e = new Error(\"The "
    "string to be encoded contains characters outside of the Latin1 range.\"); e.name = "
    "'InvalidCharacterError'; throw e; }\n"
    "  for (let i = 0; i < s.length; i += 3) {\n"
    "    const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);\n"
    "    out += B64[a >> 2] + B64[((a & 3) << 4) | (b >> 4 || 0)] + (i + 1 < s.length ? B64[((b & "
    "15) << 2) | (c >> 6 || 0)] : '=') + (i + 2 < s.length ? B64[c & 63] : '=');\n"
    "  }\n"
    "  return out;\n"
    "};\n"
    "G.atob = function atob(s) {\n"
    "  s = String(s).replace(/[\\t\\n\\f\\r ]/g, '');\n"
    "  if (s.length % 4 === 0) s = s.replace(/==?$/, '');\n"
    "  if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) { const e = new Error('The string to be "
    "decoded is not correctly encoded.'); e.name = 'InvalidCharacterError'; throw e; }\n"
    "  let out = '', buf = 0, bits = 0;\n"
    "  for (let i = 0; i < s.length; i++) { buf = (buf << 6) | B64.indexOf(s[i]); bits += 6; if "
    "(bits >= 8) { bits -= 8; out += String.fromCharCode((buf >> bits) & 255); } }\n"
    "  return out;\n"
    "};\n"
    /* TextEncoder / TextDecoder (UTF-8) */
    "class TextEncoder {\n"
    "  get encoding() { return 'utf-8'; }\n"
    "  encode(s = '') {\n"
    "    s = String(s); const out = [];\n"
    "    for (let i = 0; i < s.length; i++) {\n"
    "      let c = s.charCodeAt(i);\n"
    "      if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) { const d = s.charCodeAt(i + 1); if "
    "(d >= 0xdc00 && d < 0xe000) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; } else "
    "c = 0xfffd; }\n"
    "      else if (c >= 0xd800 && c < 0xe000) c = 0xfffd;\n"
    "      if (c < 0x80) out.push(c);\n"
    "      else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));\n"
    "      else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & "
    "63));\n"
    "      else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | "
    "(c & 63));\n"
    "    }\n"
    "    return new Uint8Array(out);\n"
    "  }\n"
    "  encodeInto(s, dest) { const b = this.encode(s); const n = Math.min(b.length, dest.length); "
    "dest.set(b.subarray(0, n)); return {read: s.length, written: n}; }\n"
    "}\n"
    "class TextDecoder {\n"
    "  constructor(label = 'utf-8', opts = {}) { label = String(label).toLowerCase(); if (label "
    "!== 'utf-8' && label !== 'utf8') throw new RangeError('only utf-8 is supported'); this.fatal "
    "= !!opts.fatal; }\n"
    "  get encoding() { return 'utf-8'; }\n"
    "  decode(buf) {\n"
    "    if (buf === undefined) return '';\n"
    "    const b = buf instanceof Uint8Array ? buf : ArrayBuffer.isView(buf) ? new "
    "Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) : new Uint8Array(buf);\n"
    "    let out = '';\n"
    "    const bad = () => { if (this.fatal) throw new TypeError('The encoded data was not "
    "valid.'); return 0xfffd; };\n"
    "    for (let i = 0; i < b.length;) {\n"
    "      const c = b[i]; let cp, n;\n"
    "      if (c < 0x80) { cp = c; n = 1; }\n"
    "      else if ((c & 0xe0) === 0xc0) { cp = ((c & 31) << 6) | (b[i + 1] & 63); n = 2; if ((b[i "
    "+ 1] & 0xc0) !== 0x80 || cp < 0x80) { cp = bad(); n = 1; } }\n"
    "      else if ((c & 0xf0) === 0xe0) { cp = ((c & 15) << 12) | ((b[i + 1] & 63) << 6) | (b[i + "
    "2] & 63); n = 3; if ((b[i + 1] & 0xc0) !== 0x80 || (b[i + 2] & 0xc0) !== 0x80 || cp < 0x800) "
    "{ cp = bad(); n = 1; } }\n"
    "      else if ((c & 0xf8) === 0xf0) { cp = ((c & 7) << 18) | ((b[i + 1] & 63) << 12) | ((b[i "
    "+ 2] & 63) << 6) | (b[i + 3] & 63); n = 4; if ((b[i + 1] & 0xc0) !== 0x80 || (b[i + 2] & "
    "0xc0) !== 0x80 || (b[i + 3] & 0xc0) !== 0x80 || cp < 0x10000 || cp > 0x10ffff) { cp = bad(); "
    "n = 1; } }\n"
    "      else { cp = bad(); n = 1; }\n"
    "      out += String.fromCodePoint(cp); i += n;\n"
    "    }\n"
    "    return out;\n"
    "  }\n"
    "}\n"
    "G.TextEncoder = TextEncoder; G.TextDecoder = TextDecoder;\n"
    /* crypto */
    "const crypto = {\n"
    "  getRandomValues(a) {\n"
    "    if (!ArrayBuffer.isView(a) || a instanceof Float32Array || a instanceof Float64Array) "
    "throw new TypeError('getRandomValues needs an integer typed array');\n"
    "    if (a.byteLength > 65536) { const e = new Error('The ArrayBufferView byte length exceeds "
    "65536'); e.name = 'QuotaExceededError'; throw e; }\n"
    "    const bytes = host.random(a.byteLength); const u8 = new Uint8Array(a.buffer, "
    "a.byteOffset, a.byteLength);\n"
    "    for (let i = 0; i < bytes.length; i++) u8[i] = bytes[i];\n"
    "    return a;\n"
    "  },\n"
    "  randomUUID() {\n"
    "    const b = host.random(16); b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;\n"
    "    const h = b.map(x => (x + 256).toString(16).slice(1));\n"
    "    return h.slice(0, 4).join('') + '-' + h.slice(4, 6).join('') + '-' + h.slice(6, "
    "8).join('') + '-' + h.slice(8, 10).join('') + '-' + h.slice(10).join('');\n"
    "  },\n"
    "};\n"
    "G.crypto = crypto;\n"
    /* structuredClone */
    "G.structuredClone = function structuredClone(v) {\n"
    "  const seen = new Map();\n"
    "  const fail = (what) => { const e = new Error(what + ' could not be cloned.'); e.name = "
    "'DataCloneError'; throw e; };\n"
    "  function c(x) {\n"
    "    if (x === null || (typeof x !== 'object' && typeof x !== 'function')) { if (typeof x === "
    "'symbol') fail('Symbol'); return x; }\n"
    "    if (typeof x === 'function') fail('function ' + (x.name || ''));\n"
    "    if (seen.has(x)) return seen.get(x);\n"
    "    let r;\n"
    "    if (Array.isArray(x)) { r = []; seen.set(x, r); for (let i = 0; i < x.length; i++) r[i] = "
    "c(x[i]); return r; }\n"
    "    if (x instanceof Date) { r = new Date(x.getTime()); seen.set(x, r); return r; }\n"
    "    if (x instanceof RegExp) { r = new RegExp(x.source, x.flags); seen.set(x, r); return r; "
    "}\n"
    "    if (x instanceof Map) { r = new Map(); seen.set(x, r); for (const [k, val] of x) "
    "r.set(c(k), c(val)); return r; }\n"
    "    if (x instanceof Set) { r = new Set(); seen.set(x, r); for (const val of x) "
    "r.add(c(val)); return r; }\n"
    "    if (x instanceof ArrayBuffer) { r = x.slice(0); seen.set(x, r); return r; }\n"
    "    if (ArrayBuffer.isView(x)) { r = new x.constructor(x); seen.set(x, r); return r; }\n"
    "    if (x instanceof Error) { r = new (G[x.name] || Error)(x.message); seen.set(x, r); if "
    "(x.stack) r.stack = x.stack; return r; }\n"
    "    if (x instanceof WeakMap || x instanceof WeakSet || x instanceof Promise) "
    "fail(Object.prototype.toString.call(x));\n"
    "    r = {}; seen.set(x, r);\n"
    "    for (const k of Object.keys(x)) r[k] = c(x[k]);\n"
    "    return r;\n"
    "  }\n"
    "  return c(v);\n"
    "};\n"
    /* require */
    "const cache = new Map();\n"
    "const ROOT = host.modulesDir;\n"
    "function norm(p) { const out = []; for (const s of p.split('/')) { if (s === '' || s === '.') "
    "continue; if (s === '..') out.pop(); else out.push(s); } return '/' + out.join('/'); }\n"
    "function dirname(p) { const i = p.lastIndexOf('/'); return i <= 0 ? '/' : p.slice(0, i); }\n"
    "function asFile(p) { for (const x of [p, p + '.js', p + '.json', p + '.cjs']) if "
    "(host.stat(x) === 1) return x; return null; }\n"
    "function asDir(p) {\n"
    "  if (host.stat(p) !== 2) return null;\n"
    "  const pj = host.readFile(p + '/package.json');\n"
    "  if (pj !== null) { let m; try { m = JSON.parse(pj).main; } catch (e) { m = undefined; } if "
    "(typeof m === 'string') { const f = asFile(norm(p + '/' + m)) || asIndex(norm(p + '/' + m)); "
    "if (f) return f; } }\n"
    "  return asIndex(p);\n"
    "}\n"
    "function asIndex(p) { for (const x of ['/index.js', '/index.json', '/index.cjs']) if "
    "(host.stat(p + x) === 1) return p + x; return null; }\n"
    "function resolve(name, from) {\n"
    "  if (typeof name !== 'string' || name === '') throw new TypeError('require() needs a module "
    "name');\n"
    "  let f = null;\n"
    "  if (name.startsWith('./') || name.startsWith('../') || name.startsWith('/')) {\n"
    "    if (from === null) throw notFound(name);\n"
    "    const p = name.startsWith('/') ? norm(name) : norm(from + '/' + name);\n"
    "    f = asFile(p) || asDir(p);\n"
    "  } else if (ROOT) {\n"
    "    const p = norm(ROOT + '/' + name);\n"
    "    f = asFile(p) || asDir(p);\n"
    "  }\n"
    "  if (!f || !ROOT || !(f === ROOT || f.startsWith(ROOT + '/'))) throw notFound(name);\n"
    "  return f;\n"
    "}\n"
    "function notFound(name) { const e = new Error(\"Cannot find module '\" + name + \"' "
    "(installed packages live in the operator's modules dir)\"); e.code = 'MODULE_NOT_FOUND'; "
    "return e; }\n"
    "function load(file) {\n"
    "  if (cache.has(file)) return cache.get(file).exports;\n"
    "  const src = host.readFile(file);\n"
    "  if (src === null) throw notFound(file);\n"
    "  const module = {exports: {}, id: file, filename: file, loaded: false};\n"
    "  cache.set(file, module);\n"
    "  try {\n"
    "    if (file.endsWith('.json')) { module.exports = JSON.parse(src); }\n"
    "    else {\n"
    "      const fn = host.compile('(function (exports, require, module, __filename, __dirname) {' "
    "+ src + '\\n})', file);\n"
    "      const dir = dirname(file);\n"
    "      const req = (n) => load(resolve(n, dir));\n"
    "      req.resolve = (n) => resolve(n, dir);\n"
    "      fn.call(module.exports, module.exports, req, module, file, dir);\n"
    "    }\n"
    "  } catch (e) { cache.delete(file); throw e; }\n"
    "  module.loaded = true;\n"
    "  return module.exports;\n"
    "}\n"
    "const require = (n) => load(resolve(n, null));\n"
    "require.resolve = (n) => resolve(n, null);\n"
    "require.cache = {};\n"
    "G.require = require;\n"
    "G.module = {exports: {}};\n"
    "G.global = G;\n"
    "G.process = {env: {}, argv: [], platform: 'linux', version: 'v0', versions: {}, nextTick: "
    "(fn, ...a) => Promise.resolve().then(() => fn(...a)), hrtime: Object.assign(() => { const t = "
    "host.now(); return [Math.floor(t / 1000), Math.floor((t % 1000) * 1e6)]; }, {bigint: () => "
    "BigInt(Math.floor(host.now() * 1e6))}), cwd: () => '/tmp'};\n"
    /* driver */
    "let state = 0, value, error;\n"
    "return {\n"
    "  start(fn, paramsText) {\n"
    "    let params;\n"
    "    params = JSON.parse(paramsText);\n"
    "    Promise.resolve().then(() => fn(params)).then(v => { state = 1; value = v; }, e => { "
    "state = 2; error = e; });\n"
    "  },\n"
    "  step() { if (state !== 0 && queue.size === 0) return false; return step() || state === 0 && "
    "queue.size > 0; },\n"
    "  pendingTimers() { return queue.size; },\n"
    "  reset() { state = 0; value = undefined; error = undefined; queue.clear(); "
    "nextId = 1; },\n"
    "  preload(names) { for (const n of names) { try { require(n); } catch (e) { /* not loadable "
    "at start: loaded on demand */ } } },\n"
    "  state() { return state; },\n"
    "  finish(maxResult) {\n"
    "    if (state === 2) return {ok: false, error};\n"
    "    let text;\n"
    "    try { text = stringify(value === undefined ? null : value); }\n"
    "    catch (e) { return {ok: false, error: {name: 'ResultError', message: 'the result cannot "
    "be converted to JSON: ' + e.message, stack: ''}}; }\n"
    "    if (text === undefined) text = 'null';\n"
    "    if (text.length > maxResult) return {ok: false, error: {name: 'ResultTooLarge', message: "
    "'the result is larger than ' + maxResult + ' bytes', stack: ''}};\n"
    "    return {ok: true, text};\n"
    "  },\n"
    "};\n"
    "})";

/* ---- C side of __host ------------------------------------------------------------------------ */

static char *js_to_cstring(JSContextRef ctx, JSValueRef v, size_t *len)
{
	JSStringRef s = JSValueToStringCopy(ctx, v, NULL);
	if (s == NULL)
		return NULL;
	size_t max = JSStringGetMaximumUTF8CStringSize(s);
	char *buf = st_xmalloc(max);
	size_t n = JSStringGetUTF8CString(s, buf, max);
	JSStringRelease(s);
	if (len)
		*len = n > 0 ? n - 1 : 0;
	return buf;
}

static JSValueRef js_string(JSContextRef ctx, const char *s, size_t n)
{
	/* JSStringCreateWithUTF8CString needs a NUL-terminated string. */
	char *copy = st_xmalloc(n + 1);
	memcpy(copy, s, n);
	copy[n] = '\0';
	JSStringRef js = JSStringCreateWithUTF8CString(copy);
	free(copy);
	JSValueRef v = JSValueMakeString(ctx, js);
	JSStringRelease(js);
	return v;
}

static JSValueRef h_write(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
                          const JSValueRef argv[], JSValueRef *exc)
{
	if (argc < 2)
		return JSValueMakeUndefined(ctx);
	bool to_err = JSValueToBoolean(ctx, argv[0]);
	size_t n = 0;
	char *s = js_to_cstring(ctx, argv[1], &n);
	if (s) {
		engine__capture_write(to_err, s, n);
		free(s);
	}
	return JSValueMakeUndefined(ctx);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static JSValueRef h_now(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
                        const JSValueRef argv[], JSValueRef *exc)
{
	return JSValueMakeNumber(ctx, now_ms());
}

static JSValueRef h_sleep(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
                          const JSValueRef argv[], JSValueRef *exc)
{
	double ms = argc > 0 ? JSValueToNumber(ctx, argv[0], NULL) : 0;
	if (ms > 0 && ms < 1e10) {
		struct timespec ts = {(time_t)(ms / 1000),
		                      (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
		}
	}
	return JSValueMakeUndefined(ctx);
}

static JSValueRef h_random(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
                           const JSValueRef argv[], JSValueRef *exc)
{
	double d = argc > 0 ? JSValueToNumber(ctx, argv[0], NULL) : 0;
	size_t n = d > 0 && d <= 65536 ? (size_t)d : 0;
	unsigned char buf[65536];
	if (engine__random_bytes(buf, n) < 0) {
		JSStringRef m =
		    JSStringCreateWithUTF8CString("getRandomValues: no entropy (getrandom)");
		*exc = JSValueMakeString(ctx, m);
		JSStringRelease(m);
		return JSValueMakeUndefined(ctx);
	}
	JSValueRef *vals = st_xcalloc(n ? n : 1, sizeof(JSValueRef));
	for (size_t i = 0; i < n; i++)
		vals[i] = JSValueMakeNumber(ctx, buf[i]);
	JSObjectRef arr = JSObjectMakeArray(ctx, n, vals, exc);
	free(vals);
	return arr;
}

/* Math.random: xoshiro256** (Blackman and Vigna), 53 random bits per double in [0, 1). */
static uint64_t rng[4];

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
	uint64_t result = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
	rng[2] ^= rng[0];
	rng[3] ^= rng[1];
	rng[1] ^= rng[2];
	rng[0] ^= rng[3];
	rng[2] ^= t;
	rng[3] = rotl(rng[3], 45);
	return result;
}

void engine__js_host_reseed(void)
{
	if (engine__random_bytes(rng, sizeof(rng)) < 0)
		abort(); /* no entropy: better no execution than a shared sequence */
	if ((rng[0] | rng[1] | rng[2] | rng[3]) == 0)
		rng[0] = 1; /* the one state the generator cannot leave */
}

static JSValueRef h_math_random(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
                                const JSValueRef argv[], JSValueRef *exc)
{
	return JSValueMakeNumber(ctx, (double)(rng_next() >> 11) * 0x1.0p-53);
}

/* Only paths under the modules dir, without "..": the prelude normalises, we re-check. */
static char *checked_path(JSContextRef ctx, JSValueRef v)
{
	char *p = js_to_cstring(ctx, v, NULL);
	if (p == NULL)
		return NULL;
	size_t rl = strlen(host_modules_dir);
	if (rl == 0 || strncmp(p, host_modules_dir, rl) != 0 || (p[rl] != '/' && p[rl] != '\0') ||
	    strstr(p, "/..") != NULL) {
		free(p);
		return NULL;
	}
	return p;
}

static JSValueRef h_stat(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
                         const JSValueRef argv[], JSValueRef *exc)
{
	if (argc < 1)
		return JSValueMakeNumber(ctx, 0);
	char *p = checked_path(ctx, argv[0]);
	int kind = 0;
	struct stat st;
	if (p && stat(p, &st) == 0)
		kind = S_ISREG(st.st_mode) ? 1 : S_ISDIR(st.st_mode) ? 2 : 0;
	free(p);
	return JSValueMakeNumber(ctx, kind);
}

static JSValueRef h_read(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
                         const JSValueRef argv[], JSValueRef *exc)
{
	if (argc < 1)
		return JSValueMakeNull(ctx);
	char *p = checked_path(ctx, argv[0]);
	char *data = NULL;
	size_t len = 0;
	if (p == NULL || st_read_file(p, 64u << 20, &data, &len, NULL) < 0) {
		free(p);
		return JSValueMakeNull(ctx);
	}
	free(p);
	JSValueRef v = js_string(ctx, data, len);
	free(data);
	return v;
}

static JSValueRef h_compile(JSContextRef ctx, JSObjectRef fn, JSObjectRef self, size_t argc,
                            const JSValueRef argv[], JSValueRef *exc)
{
	if (argc < 2)
		return JSValueMakeUndefined(ctx);
	JSStringRef src = JSValueToStringCopy(ctx, argv[0], exc);
	if (src == NULL)
		return JSValueMakeUndefined(ctx);
	JSStringRef url = JSValueToStringCopy(ctx, argv[1], exc);
	JSValueRef v = JSEvaluateScript(ctx, src, NULL, url, 1, exc);
	JSStringRelease(src);
	if (url)
		JSStringRelease(url);
	return v ? v : JSValueMakeUndefined(ctx);
}

static void set_fn(JSContextRef ctx, JSObjectRef obj, const char *name,
                   JSObjectCallAsFunctionCallback cb)
{
	JSStringRef n = JSStringCreateWithUTF8CString(name);
	JSObjectRef f = JSObjectMakeFunctionWithCallback(ctx, n, cb);
	JSObjectSetProperty(ctx, obj, n, f, kJSPropertyAttributeNone, NULL);
	JSStringRelease(n);
}

static JSObjectRef driver;

void engine__js_host_install(JSGlobalContextRef ctx, const char *modules_dir)
{
	st_strlcpy(host_modules_dir, modules_dir ? modules_dir : "", sizeof(host_modules_dir));
	/* Math.random, with the property's usual attributes (writable, configurable, not
	   enumerable); seeded here for the zygote's own warm-up, again in every child. */
	engine__js_host_reseed();
	JSStringRef mn = JSStringCreateWithUTF8CString("Math");
	JSValueRef math = JSObjectGetProperty(ctx, JSContextGetGlobalObject(ctx), mn, NULL);
	JSStringRelease(mn);
	if (math != NULL && JSValueIsObject(ctx, math)) {
		JSStringRef rn = JSStringCreateWithUTF8CString("random");
		JSObjectSetProperty(ctx, engine__js_obj(math), rn,
		                    JSObjectMakeFunctionWithCallback(ctx, rn, h_math_random),
		                    kJSPropertyAttributeDontEnum, NULL);
		JSStringRelease(rn);
	}
	JSObjectRef host = JSObjectMake(ctx, NULL, NULL);
	set_fn(ctx, host, "write", h_write);
	set_fn(ctx, host, "now", h_now);
	set_fn(ctx, host, "sleep", h_sleep);
	set_fn(ctx, host, "random", h_random);
	set_fn(ctx, host, "readFile", h_read);
	set_fn(ctx, host, "stat", h_stat);
	set_fn(ctx, host, "compile", h_compile);
	JSStringRef mk = JSStringCreateWithUTF8CString("modulesDir");
	JSObjectSetProperty(ctx, host, mk,
	                    modules_dir ? js_string(ctx, modules_dir, strlen(modules_dir))
	                                : JSValueMakeNull(ctx),
	                    kJSPropertyAttributeNone, NULL);
	JSStringRelease(mk);

	JSStringRef src = JSStringCreateWithUTF8CString(PRELUDE);
	JSStringRef url = JSStringCreateWithUTF8CString("stockade:prelude");
	JSValueRef exc = NULL;
	JSValueRef fnv = JSEvaluateScript(ctx, src, NULL, url, 1, &exc);
	JSStringRelease(src);
	JSStringRelease(url);
	if (fnv == NULL || !JSValueIsObject(ctx, fnv))
		return;
	JSValueRef args[1] = {host};
	JSValueRef d = JSObjectCallAsFunction(ctx, engine__js_obj(fnv), NULL, 1, args, &exc);
	if (d && JSValueIsObject(ctx, d)) {
		driver = engine__js_obj(d);
		JSValueProtect(ctx, driver);
	}
}

JSObjectRef engine__js_driver(void)
{
	return driver;
}
