/*
 * test-store.c - state store cases on SQLite (see store-cases.h).
 */
#define STORE_CASE_PG 0
#include "store-cases.h"
