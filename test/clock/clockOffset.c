#define _GNU_SOURCE
#include <time.h>
#include <sys/time.h>
#include <dlfcn.h>
#include <stdlib.h>
/*
 * Preloaded into every process of a test run (test/clock/at.sh): shifts the
 * wall clock — clock_gettime(CLOCK_REALTIME), gettimeofday, time — by
 * CLOCK_OFFSET_S seconds, and nothing else. Node's Date and PostgreSQL's
 * now() then agree on a moment of your choosing, while monotonic clocks,
 * sleeps and timers stay real: libfaketime shifts those too, and under it
 * PostgreSQL's statement and lock timeouts never fire.
 */
static long long off = 0;
static int (*real_cg)(clockid_t, struct timespec *);
static int (*real_gtod)(struct timeval *, void *);
__attribute__((constructor)) static void setup(void) {
  const char *s = getenv("CLOCK_OFFSET_S");
  off = s ? atoll(s) : 0;
  real_cg = dlsym(RTLD_NEXT, "clock_gettime");
  real_gtod = dlsym(RTLD_NEXT, "gettimeofday");
}
int clock_gettime(clockid_t id, struct timespec *ts) {
  if (!real_cg) setup();
  int r = real_cg(id, ts);
  if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += off;
  return r;
}
int gettimeofday(struct timeval *tv, void *tz) {
  if (!real_gtod) setup();
  int r = real_gtod(tv, tz);
  if (r == 0 && tv) tv->tv_sec += off;
  return r;
}
time_t time(time_t *t) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (t) *t = ts.tv_sec;
  return ts.tv_sec;
}
