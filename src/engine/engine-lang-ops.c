/*
 * engine-lang-ops.c - the entry table of libstockade-lang.so (the language runtimes), the one
 * symbol the executable looks up with dlsym (see engine-lang.c). Built into the shared object
 * only, never into the executable.
 */
#include "engine/engine-internal.h"

__attribute__((visibility("default"))) extern const struct engine_lang_ops engine_lang_ops;
const struct engine_lang_ops engine_lang_ops = {
    .abi = ENGINE_LANG_ABI,
    .js_zygote_init = engine__js_zygote_init,
    .py_zygote_init = engine__py_zygote_init,
    .py_after_fork = engine__py_after_fork,
    .js_after_fork = engine__js_after_fork,
    .js_run = engine__js_run,
    .py_run = engine__py_run,
    .js_touch = engine__js_touch,
    .py_touch = engine__py_touch,
};
