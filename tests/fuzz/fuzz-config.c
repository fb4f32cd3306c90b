/*
 * fuzz-config.c - libFuzzer target: any bytes as stockade.yaml. Loading must never crash or
 * leak, whatever the YAML (aliases, merge keys, deep nesting, odd scalars); the result is
 * either a config or a list of problems.
 */
#include <stdint.h>
#include <stdlib.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stockade_config cfg;
	struct config_problems pr;
	config_problems_init(&pr);
	if (config_load_string((const char *)data, size, "fuzz.yaml", &cfg, &pr, NULL) == 0) {
		json_t *j = config_to_json(&cfg, true);
		json_decref(j);
		config_release(&cfg);
	}
	config_problems_release(&pr);
	return 0;
}
