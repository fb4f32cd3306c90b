/*
 * test-store-pg.c - the same state store cases on a real Postgres (see store-cases.h);
 * skipped unless STOCKADE_TEST_PG is set, as tests/e2e/store-pg.sh does.
 */
#define STORE_CASE_PG 1
#include "store-cases.h"
