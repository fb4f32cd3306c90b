/*
 * banned.h - functions that make overflows and silent misparses easy (git's banned.h).
 * Use st_strlcpy, st_buf_appendf / snprintf, st_parse_i64 / st_parse_u64 instead.
 */
#ifndef STOCKADE_BANNED_H
#define STOCKADE_BANNED_H

#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef atol
#define atol(x) BANNED(atol)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef gets
#define gets(x) BANNED(gets)

#endif
