/*
 * engine-py.c - the Python engine: embedded CPython 3.11.
 *
 * Zygote: Py_InitializeEx(0) (no Python signal handlers), import the configured modules
 * (numpy with OPENBLAS_NUM_THREADS=1 so no BLAS threads exist at fork time), define the runner
 * (RUNNER below, compiled once) and the `_stockade` capture module. The zygote holds the GIL
 * and never runs user code.
 *
 * Child: PyOS_AfterFork_Child() and numpy's global generator reseeded, then the runner
 * compiles the code as the body of a function (`def __main__(params)`, or `async def` when
 * the body awaits) from its AST, so line numbers are the user's own; the return value is
 * converted to JSON (numpy scalars and arrays, pandas DataFrame -> list of records, Series ->
 * list, or dict when its index is not the default range; NaN and infinities -> null;
 * datetimes -> ISO 8601 strings); sys.stdout and sys.stderr write into the capped capture
 * buffers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "engine/engine-internal.h"

static const char RUNNER[] =
    "import ast as _ast, json as _json, sys as _sys, traceback as _tb, math as _math\n"
    "import datetime as _dt, decimal as _decimal\n"
    "import _stockade, asyncio as _asyncio, builtins as _builtins\n"
    "from json import dumps as _dumps, loads as _loads\n"
    "_builtins_saved = dict(_builtins.__dict__)\n"
    "_len, _all = len, all  # the user's code may delete or replace the builtins\n"
    "def _restore_builtins():\n"
    "    # Reads first: writing the dict would copy its pages in every child for nothing.\n"
    "    d = _builtins.__dict__\n"
    "    if _len(d) == _len(_builtins_saved) and _all(d.get(k, d) is v for k, v in "
    "_builtins_saved.items()): return\n"
    "    for k in [k for k in d if k not in _builtins_saved]: del d[k]\n"
    "    d.update(_builtins_saved)\n"
    "class _Out:\n"
    "    def __init__(self, err): self._err = err\n"
    "    def write(self, s):\n"
    "        if not isinstance(s, str): raise TypeError('write() argument must be str')\n"
    "        _stockade.write(self._err, s); return len(s)\n"
    "    def flush(self): pass\n"
    "    def isatty(self): return False\n"
    "    def writable(self): return True\n"
    "    @property\n"
    "    def encoding(self): return 'utf-8'\n"
    "class ResultError(Exception): pass\n"
    "class _AwaitFinder(_ast.NodeVisitor):\n"
    "    found = False\n"
    "    def visit_Await(self, n): self.found = True\n"
    "    def visit_AsyncFor(self, n): self.found = True\n"
    "    def visit_AsyncWith(self, n): self.found = True\n"
    "    def visit_FunctionDef(self, n): pass\n"
    "    def visit_AsyncFunctionDef(self, n): pass\n"
    "    def visit_Lambda(self, n): pass\n"
    "def _has_await(tree):\n"
    "    v = _AwaitFinder()\n"
    "    for s in tree.body: v.visit(s)\n"
    "    return v.found\n"
    "def _conv(o, depth=0):\n"
    "    if depth > 200: raise ResultError('the result is nested too deeply')\n"
    "    if o is None or isinstance(o, (bool, str)): return o\n"
    "    if isinstance(o, int): return o\n"
    "    if isinstance(o, float): return o if _math.isfinite(o) else None\n"
    "    if isinstance(o, dict):\n"
    "        r = {}\n"
    "        for k, v in o.items():\n"
    "            if not isinstance(k, (str, int, float, bool)) and k is not None:\n"
    "                k = str(k)\n"
    "            elif not isinstance(k, str):\n"
    "                k = _dumps(k)\n"
    "            r[k] = _conv(v, depth + 1)\n"
    "        return r\n"
    "    if isinstance(o, (list, tuple)): return [_conv(v, depth + 1) for v in o]\n"
    "    if isinstance(o, (set, frozenset)): return [_conv(v, depth + 1) for v in o]\n"
    "    if isinstance(o, (_dt.datetime, _dt.date, _dt.time)): return o.isoformat()\n"
    "    if isinstance(o, _decimal.Decimal): return _conv(float(o))\n"
    "    np = _sys.modules.get('numpy')\n"
    "    if np is not None:\n"
    "        if isinstance(o, np.generic): return _conv(o.item(), depth + 1)\n"
    "        if isinstance(o, np.ndarray): return _conv(o.tolist(), depth + 1)\n"
    "    pd = _sys.modules.get('pandas')\n"
    "    if pd is not None:\n"
    "        if isinstance(o, pd.DataFrame):\n"
    "            return _conv(o.to_dict(orient='records'), depth + 1)\n"
    "        if isinstance(o, pd.Series):\n"
    "            if isinstance(o.index, pd.RangeIndex) and o.index.start == 0 and o.index.step == "
    "1:\n"
    "                return _conv(o.tolist(), depth + 1)\n"
    "            return _conv(o.to_dict(), depth + 1)\n"
    "        if isinstance(o, pd.Timestamp): return o.isoformat()\n"
    "        if o is pd.NaT: return None\n"
    "        if isinstance(o, pd.Index): return _conv(o.tolist(), depth + 1)\n"
    "    if isinstance(o, (bytes, bytearray)):\n"
    "        raise ResultError('a bytes value cannot be converted to JSON (decode it first)')\n"
    "    raise ResultError('a value of type %s cannot be converted to JSON' % type(o).__name__)\n"
    "def _user_frames(tb):\n"
    "    return [f for f in _tb.extract_tb(tb) if f.filename == '<code>']\n"
    "def _error(e, skip_runner=True):\n"
    "    name = type(e).__name__\n"
    "    msg = str(e)\n"
    "    line = 0\n"
    "    if isinstance(e, SyntaxError):\n"
    "        line = e.lineno or 0\n"
    "        msg = e.msg\n"
    "        stack = ''.join(_tb.format_exception_only(type(e), e))\n"
    "    else:\n"
    "        frames = _user_frames(e.__traceback__)\n"
    "        if frames: line = frames[-1].lineno or 0\n"
    "        tb = e.__traceback__\n"
    "        while tb is not None and tb.tb_frame.f_code.co_filename == '<stockade>':\n"
    "            tb = tb.tb_next\n"
    "        stack = ''.join(_tb.format_exception(type(e), e, tb))\n"
    "        stack = stack.replace('File \"<code>\"', 'File \"<code>\"')\n"
    "    return ('error', None, name, msg, stack, line)\n"
    "def run(code, params_json, params_name, max_result):\n"
    "    _sys.stdout = _Out(False); _sys.stderr = _Out(True)\n"
    "    try:\n"
    "        tree = _ast.parse(code, '<code>', 'exec')\n"
    "        is_async = _has_await(tree)\n"
    "        args = _ast.arguments(posonlyargs=[], args=[_ast.arg(arg=params_name)], vararg=None,\n"
    "                              kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])\n"
    "        body = tree.body or [_ast.Pass()]\n"
    "        cls = _ast.AsyncFunctionDef if is_async else _ast.FunctionDef\n"
    "        fn = cls(name='__main__', args=args, body=body, decorator_list=[], returns=None,\n"
    "                 type_comment=None, lineno=1, col_offset=0)\n"
    "        mod = _ast.Module(body=[fn], type_ignores=[])\n"
    "        _ast.fix_missing_locations(mod)\n"
    "        compiled = compile(mod, '<code>', 'exec')\n"
    "    except SyntaxError as e:\n"
    "        return _error(e)\n"
    "    except Exception as e:\n"
    "        return _error(e)\n"
    "    g = {'__name__': '__main__', '__builtins__': __builtins__}\n"
    "    try:\n"
    "        params = _loads(params_json)\n"
    "        exec(compiled, g)\n"
    "        if is_async:\n"
    "            value = _asyncio.run(g['__main__'](params))\n"
    "        else:\n"
    "            value = g['__main__'](params)\n"
    "    except BaseException as e:\n"
    "        _restore_builtins()\n"
    "        if isinstance(e, SystemExit):\n"
    "            return ('error', None, 'SystemExit', 'exit() was called with %r' % (e.code,), '', "
    "0)\n"
    "        return _error(e)\n"
    "    _restore_builtins()\n"
    "    try:\n"
    "        text = _dumps(_conv(value), allow_nan=False, ensure_ascii=False)\n"
    "    except RecursionError:\n"
    "        return ('error', None, 'ResultError', 'the result is nested too deeply', '', 0)\n"
    "    except ResultError as e:\n"
    "        return ('error', None, 'ResultError', str(e), '', 0)\n"
    "    except Exception as e:\n"
    "        return ('error', None, 'ResultError', 'the result cannot be converted to JSON: %s' % "
    "e, '', 0)\n"
    "    if len(text.encode('utf-8')) > max_result:\n"
    "        return ('error', None, 'ResultTooLarge', 'the result is larger than %d bytes' % "
    "max_result, '', 0)\n"
    "    return ('ok', text, None, None, None, 0)\n"
    "def _warm_pandas(pd):\n"
    "    # First calls of common operations fill pandas' lazy caches (measured: groupby,\n"
    "    # merge, read_csv 10-20 ms the first time, 1-2 ms after): pay that here, once.\n"
    "    import io\n"
    "    df = pd.DataFrame({'k': [1, 1, 2], 'v': [1.0, 2.0, 3.0], 's': ['a', 'b', 'c']})\n"
    "    int(df['v'].sum()); float(df['v'].mean()); df.describe()\n"
    "    df.groupby('k')['v'].sum().to_dict(); df.groupby('k').agg({'v': 'mean'})\n"
    "    df.merge(pd.DataFrame({'k': [1, 2], 'w': [3, 4]}), on='k')\n"
    "    df.sort_values('v').to_json(); df.to_csv(); df[df['v'] > 1].copy()\n"
    "    pd.read_csv(io.StringIO('a,b\\n1,2\\n')); pd.to_datetime(['2024-01-01'])\n"
    "    pd.concat([df, df]).reset_index(drop=True).pivot_table(index='k', values='v')\n"
    "def touch(extra=None):\n"
    "    out, err = _sys.stdout, _sys.stderr\n"
    "    try:\n"
    "        run('return 1+1', 'null', 'params', 1 << 20)\n"
    "        if extra is not None: run(extra, 'null', 'params', 1 << 20)\n"
    "    finally:\n"
    "        _sys.stdout, _sys.stderr = out, err\n"
    "def warm():\n"
    "    out, err = _sys.stdout, _sys.stderr\n"
    "    try:\n"
    "        run('x = [i * 2 for i in range(3)]\\nreturn {\"a\": x, \"b\": 1.5}', '{\"k\": 1}', "
    "'params', 1 << 20)\n"
    "        run('import math\\nawait _asyncio.sleep(0) if False else None\\nreturn math.pi', "
    "'null', 'params', 1 << 20)\n"
    "        run('1/0', 'null', 'params', 1 << 20)\n"
    "        run('return (', 'null', 'params', 1 << 20)\n"
    "        np = _sys.modules.get('numpy')\n"
    "        if np is not None: _json.dumps(_conv({'a': np.arange(3), 'b': np.float64(1)}))\n"
    "        pd = _sys.modules.get('pandas')\n"
    "        if pd is not None:\n"
    "            _json.dumps(_conv(pd.DataFrame({'x': [1, 2]})))\n"
    "            _warm_pandas(pd)\n"
    "    finally:\n"
    "        _sys.stdout, _sys.stderr = out, err\n";

static PyObject *runner_fn;
static PyObject *touch_fn;
/*
 * numpy's global generator (numpy.random.random(), pandas' sample(), ...): an MT19937 whose
 * state the children would inherit from the zygote, so that every execution drew the same
 * numbers. A child gives it a fresh 624-word key from getrandom. Calling numpy for that
 * (numpy.random.seed(), or set_state) costs 5-9 ms in a fresh child here (the first touch of
 * numpy's code), so when the zygote has verified where the key lives (the bit generator's
 * public BitGenerator capsule points at its state: the 624-word key, then the position) the
 * child writes it directly; otherwise it calls numpy.random.set_state.
 */
static PyObject *np_set_state_fn;
static uint32_t *np_key; /* 624 words, then an int: the position (624 = twist first) */
#define NP_MT_WORDS 624

/* numpy's public bitgen_t (numpy/random/bitgen.h): the first member is the state pointer. */
struct np_bitgen {
	void *state;
};

/* Is `key` numpy's global MT19937 state? Compared word for word with get_state(). */
static bool np_key_verified(PyObject *npr, uint32_t *key)
{
	PyObject *st = PyObject_CallMethod(npr, "get_state", NULL);
	bool ok = st != NULL && PyTuple_Check(st) && PyTuple_Size(st) == 5;
	if (ok) {
		PyObject *words = PyTuple_GetItem(st, 1);
		long pos = PyLong_AsLong(PyTuple_GetItem(st, 2));
		long has_gauss = PyLong_AsLong(PyTuple_GetItem(st, 3));
		ok = PySequence_Check(words) && PySequence_Size(words) == NP_MT_WORDS &&
		     pos == *(int *)(key + NP_MT_WORDS) && has_gauss == 0;
		for (Py_ssize_t i = 0; ok && i < NP_MT_WORDS; i++) {
			PyObject *w = PySequence_GetItem(words, i);
			PyObject *n = w ? PyNumber_Index(w) : NULL;
			ok = n != NULL && PyLong_AsUnsignedLong(n) == key[i];
			Py_XDECREF(n);
			Py_XDECREF(w);
		}
	}
	Py_XDECREF(st);
	PyErr_Clear();
	return ok;
}

static void np_find_generator(void)
{
	PyObject *mods = PyImport_GetModuleDict();
	PyObject *npr = PyDict_GetItemString(mods, "numpy.random");
	if (npr == NULL)
		return; /* not imported: a child that imports it seeds it from the OS */
	np_set_state_fn = PyObject_GetAttrString(npr, "set_state");
	PyObject *mt = PyDict_GetItemString(mods, "numpy.random.mtrand");
	PyObject *rs = mt ? PyObject_GetAttrString(mt, "_rand") : NULL;
	PyObject *bg = rs ? PyObject_GetAttrString(rs, "_bit_generator") : NULL;
	PyObject *cap = bg ? PyObject_GetAttrString(bg, "capsule") : NULL;
	struct np_bitgen *b = cap ? PyCapsule_GetPointer(cap, "BitGenerator") : NULL;
	const char *kind = bg ? Py_TYPE(bg)->tp_name : "";
	if (b != NULL && b->state != NULL && strcmp(kind, "numpy.random._mt19937.MT19937") == 0 &&
	    np_key_verified(npr, b->state))
		np_key = b->state;
	Py_XDECREF(cap);
	Py_XDECREF(bg);
	Py_XDECREF(rs);
	PyErr_Clear();
}

static void np_reseed(void)
{
	if (np_set_state_fn == NULL)
		return;
	uint32_t key[NP_MT_WORDS];
	if (engine__random_bytes(key, sizeof(key)) < 0)
		abort(); /* no entropy: no execution rather than one sharing a sequence */
	key[0] |= 0x80000000u; /* as numpy seeds it: never an all-zero state */
	if (np_key != NULL) {
		memcpy(np_key, key, sizeof(key));
		*(int *)(np_key + NP_MT_WORDS) = NP_MT_WORDS;
		return;
	}
	PyObject *list = PyList_New(NP_MT_WORDS);
	for (Py_ssize_t i = 0; list != NULL && i < NP_MT_WORDS; i++)
		PyList_SET_ITEM(list, i, PyLong_FromUnsignedLong(key[i]));
	PyObject *r = list ? PyObject_CallFunction(np_set_state_fn, "((sOiid))", "MT19937", list,
	                                           NP_MT_WORDS, 0, 0.0)
	                   : NULL;
	Py_XDECREF(list);
	if (r == NULL)
		abort(); /* no execution rather than one sharing the zygote's sequence */
	Py_DECREF(r);
}

static PyObject *py_write(PyObject *self, PyObject *args)
{
	(void)self;
	int to_err = 0;
	const char *s = NULL;
	Py_ssize_t n = 0;
	if (!PyArg_ParseTuple(args, "ps#", &to_err, &s, &n))
		return NULL;
	engine__capture_write(to_err != 0, s, (size_t)n);
	Py_RETURN_NONE;
}

static PyMethodDef stockade_methods[] = {
    {"write", py_write, METH_VARARGS, "write captured output"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef stockade_module = {
    PyModuleDef_HEAD_INIT, "_stockade", NULL, -1, stockade_methods, NULL, NULL, NULL, NULL,
};

static PyObject *stockade_init(void)
{
	return PyModule_Create(&stockade_module);
}

static char *py_error_text(void)
{
	PyObject *type = NULL, *value = NULL, *tb = NULL;
	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	char *out = NULL;
	PyObject *s = value ? PyObject_Str(value) : NULL;
	const char *tn = type ? ((PyTypeObject *)type)->tp_name : "error";
	const char *vs = s ? PyUnicode_AsUTF8(s) : NULL;
	out = st_xasprintf("%s: %s", tn, vs ? vs : "");
	Py_XDECREF(s);
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	PyErr_Clear();
	return out;
}

int engine__py_zygote_init(const char *const *modules, struct st_error **err)
{
	if (PyImport_AppendInittab("_stockade", stockade_init) < 0)
		return st_error_make(err, 0, "cannot register the _stockade module");
	PyConfig config;
	PyConfig_InitPythonConfig(&config);
	config.install_signal_handlers = 0;
	config.write_bytecode = 0;
	config.user_site_directory = 0;
	config.parse_argv = 0;
	config.buffered_stdio = 0;
	PyStatus status = PyConfig_SetString(&config, &config.program_name, L"python3");
	if (!PyStatus_Exception(status))
		status = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(status))
		return st_error_make(err, 0, "cannot initialise Python: %s",
		                     status.err_msg ? status.err_msg : "unknown error");
	for (size_t i = 0; modules && modules[i]; i++) {
		PyObject *m = PyImport_ImportModule(modules[i]);
		if (m == NULL) {
			char *msg = py_error_text();
			int r = st_error_make(err, 0, "cannot import the python module '%s': %s",
			                      modules[i], msg);
			free(msg);
			return r;
		}
		Py_DECREF(m);
	}
	PyObject *code = Py_CompileString(RUNNER, "<stockade>", Py_file_input);
	if (code == NULL) {
		char *msg = py_error_text();
		int r = st_error_make(err, 0, "cannot compile the python runner: %s", msg);
		free(msg);
		return r;
	}
	PyObject *mod = PyImport_ExecCodeModule("_stockade_runner", code);
	Py_DECREF(code);
	if (mod == NULL) {
		char *msg = py_error_text();
		int r = st_error_make(err, 0, "cannot load the python runner: %s", msg);
		free(msg);
		return r;
	}
	runner_fn = PyObject_GetAttrString(mod, "run");
	touch_fn = PyObject_GetAttrString(mod, "touch");
	PyObject *warm = PyObject_GetAttrString(mod, "warm");
	Py_DECREF(mod);
	if (runner_fn == NULL || touch_fn == NULL || warm == NULL)
		return st_error_make(err, 0, "the python runner has no run()");
	/* One run of each path in the zygote fills the lazy caches (imports done on first use,
	   type attribute caches, the compiler's) so that no child pays for them. */
	PyObject *wr = PyObject_CallNoArgs(warm);
	Py_DECREF(warm);
	if (wr == NULL) {
		char *msg = py_error_text();
		int r = st_error_make(err, 0, "the python runner failed its warm-up: %s", msg);
		free(msg);
		return r;
	}
	Py_DECREF(wr);
	/* Objects created so far are the zygote's; freezing them keeps the collector from
	   touching (and copying) their pages in every child. */
	/* The stdlib's random module reseeds itself after a fork; numpy's global generator is
	   reseeded by each child (np_reseed). */
	np_find_generator();
	if (np_set_state_fn != NULL)
		st_log(ST_LOG_DEBUG, "numpy's global generator: each child reseeds it %s",
		       np_key ? "in place" : "through numpy.random.set_state");
	PyObject *gc = PyImport_ImportModule("gc");
	if (gc) {
		PyObject *r = PyObject_CallMethod(gc, "freeze", NULL);
		Py_XDECREF(r);
		Py_DECREF(gc);
	}
	PyErr_Clear();
	return 0;
}

void engine__py_after_fork(void)
{
	/* CPython's own after-fork work, including the at-fork hooks (random reseeds there). */
	PyOS_AfterFork_Child();
	np_reseed();
}

void engine__py_touch(const char *extra)
{
	PyObject *r =
	    extra ? PyObject_CallFunction(touch_fn, "s", extra) : PyObject_CallNoArgs(touch_fn);
	Py_XDECREF(r);
	PyErr_Clear();
}

static const char *tuple_str(PyObject *t, Py_ssize_t i)
{
	PyObject *o = PyTuple_GetItem(t, i);
	if (o == NULL || o == Py_None)
		return NULL;
	return PyUnicode_AsUTF8(o);
}

void engine__py_run(const struct engine_child_request *req)
{
	PyObject *r = PyObject_CallFunction(runner_fn, "sssn", req->code, req->params_json,
	                                    req->params_name, (Py_ssize_t)req->max_result_bytes);
	if (r == NULL || !PyTuple_Check(r) || PyTuple_Size(r) != 6) {
		char *msg = py_error_text();
		engine__child_finish(ENGINE_INTERNAL, NULL, "InternalError", msg, NULL, 0);
	}
	const char *status = tuple_str(r, 0);
	if (status != NULL && strcmp(status, "ok") == 0) {
		const char *text = tuple_str(r, 1);
		json_error_t jerr;
		json_t *v = text ? json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr) : NULL;
		if (v == NULL)
			engine__child_finish(ENGINE_ERROR, NULL, "ResultError",
			                     "the result cannot be converted to JSON", NULL, 0);
		engine__child_finish(ENGINE_OK, v, NULL, NULL, NULL, 0);
	}
	PyObject *line = PyTuple_GetItem(r, 5);
	engine__child_finish(ENGINE_ERROR, NULL, tuple_str(r, 2), tuple_str(r, 3), tuple_str(r, 4),
	                     line ? (int)PyLong_AsLong(line) : 0);
}
