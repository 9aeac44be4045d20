/*
 * An LD_PRELOAD shim that models a power loss for the files of one directory: it keeps, for
 * each of them, a shadow copy holding only what was fsync'ed. The harness SIGKILLs the process
 * and copies the shadows over the files: that is the disk as it would be after the power came
 * back, when every write since the file's last fsync/fdatasync is lost (the worst case the
 * kernel allows; a real disk may keep some of them, never fewer than this).
 *
 * Environment:
 *   BOTQUEUE_POWERLOSS_DIR     the directory whose files are modelled (an absolute, resolved path)
 *   BOTQUEUE_POWERLOSS_SHADOW  where the shadows go (one file per modelled file, same name), and
 *                              `shim-stats` (writes and syncs seen, so the harness knows the shim ran)
 * Without them the shim does nothing.
 *
 * What it models: file contents. Not directory entries (a file that exists survives) and not
 * `-shm` files (SQLite's shared-memory index is rebuilt when a database is opened after a crash;
 * it is written through mmap, which no shim sees). SQLite (better-sqlite3) writes with
 * pwrite64/write, truncates with ftruncate64 and syncs with fsync (it has no fdatasync there);
 * every variant glibc offers is wrapped anyway.
 *
 * A file is first seen at its first write, truncate or sync; its content then (what this process
 * found on opening it: the harness starts each run from a synced image) seeds the shadow. Each
 * write widens the file's dirty range; a sync copies that range (clipped to the file's size)
 * into the shadow and sets the shadow's size to the file's.
 *
 * Built by .ci/services.sh (or test/support/power-loss-shim.ts on first use):
 *   gcc -O2 -shared -fPIC -o node_modules/.cache/botqueue/powerloss-shim.so test/support/powerloss-shim.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FILES 256

struct file {
  dev_t dev;
  ino_t ino;
  int tracked;
  char shadow[2 * PATH_MAX];
  off_t lo, hi; /* dirty range [lo, hi); lo > hi when clean */
};

static struct file files[MAX_FILES];
static int nfiles;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char dir[PATH_MAX];
static char shadow_dir[PATH_MAX];
static int enabled = -1;
static unsigned long long writes_seen, syncs_seen;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static void init(void) {
  if (enabled != -1) return;
  real_write = dlsym(RTLD_NEXT, "write");
  real_pwrite = dlsym(RTLD_NEXT, "pwrite");
  real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
  real_writev = dlsym(RTLD_NEXT, "writev");
  real_pwritev = dlsym(RTLD_NEXT, "pwritev");
  real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
  real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
  real_fsync = dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
  const char *d = getenv("BOTQUEUE_POWERLOSS_DIR");
  const char *s = getenv("BOTQUEUE_POWERLOSS_SHADOW");
  if (d == NULL || s == NULL || strlen(d) >= sizeof dir - 2 || strlen(s) >= sizeof shadow_dir - 32) {
    enabled = 0;
    return;
  }
  snprintf(dir, sizeof dir, "%s/", d);
  snprintf(shadow_dir, sizeof shadow_dir, "%s", s);
  enabled = 1;
}

__attribute__((constructor)) static void on_load(void) {
  pthread_mutex_lock(&lock);
  init();
  pthread_mutex_unlock(&lock);
}

/* Copies [from, to) of fd `src` into fd `dst` at the same offsets, with the real calls. */
static void copy_range(int src, int dst, off_t from, off_t to) {
  char buf[65536];
  while (from < to) {
    size_t want = (size_t)(to - from) < sizeof buf ? (size_t)(to - from) : sizeof buf;
    ssize_t got = pread(src, buf, want, from);
    if (got <= 0) break;
    ssize_t put = 0;
    while (put < got) {
      ssize_t n = real_pwrite64(dst, buf + put, (size_t)(got - put), from + put);
      if (n <= 0) return;
      put += n;
    }
    from += got;
  }
}

static void write_stats(void) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/shim-stats", shadow_dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  char line[128];
  int n = snprintf(line, sizeof line, "writes %llu syncs %llu\n", writes_seen, syncs_seen);
  real_write(fd, line, (size_t)n);
  close(fd);
}

/* The modelled file behind fd, or NULL; seeds its shadow the first time. Called with the lock held. */
static struct file *lookup(int fd) {
  if (enabled != 1) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
  for (int i = 0; i < nfiles; i++)
    if (files[i].dev == st.st_dev && files[i].ino == st.st_ino) return files[i].tracked ? &files[i] : NULL;
  if (nfiles == MAX_FILES) return NULL;
  struct file *f = &files[nfiles++];
  memset(f, 0, sizeof *f);
  f->dev = st.st_dev;
  f->ino = st.st_ino;
  f->lo = 1;
  f->hi = 0;
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t len = readlink(link, path, sizeof path - 1);
  if (len <= 0) return NULL;
  path[len] = 0;
  size_t dl = strlen(dir);
  if (strncmp(path, dir, dl) != 0 || strchr(path + dl, '/') != NULL) return NULL;
  if (len >= 4 && strcmp(path + len - 4, "-shm") == 0) return NULL;
  f->tracked = 1;
  snprintf(f->shadow, sizeof f->shadow, "%s/%s", shadow_dir, path + dl);
  if (access(f->shadow, F_OK) != 0) {
    int src = open(path, O_RDONLY);
    int dst = open(f->shadow, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (src >= 0 && dst >= 0) copy_range(src, dst, 0, st.st_size);
    if (src >= 0) close(src);
    if (dst >= 0) close(dst);
  }
  return f;
}

static void dirty(struct file *f, off_t from, off_t to) {
  if (f == NULL || to <= from) return;
  writes_seen++;
  if (f->lo > f->hi) {
    f->lo = from;
    f->hi = to;
  } else {
    if (from < f->lo) f->lo = from;
    if (to > f->hi) f->hi = to;
  }
  if ((writes_seen & 255) == 0) write_stats();
}

/* The data of fd is now durable: bring its shadow up to date. */
static void synced(int fd) {
  pthread_mutex_lock(&lock);
  struct file *f = lookup(fd);
  if (f != NULL) {
    syncs_seen++;
    struct stat st;
    int dst = open(f->shadow, O_WRONLY | O_CREAT, 0644);
    if (dst >= 0 && fstat(fd, &st) == 0) {
      off_t hi = f->hi < st.st_size ? f->hi : st.st_size;
      if (f->lo < hi) copy_range(fd, dst, f->lo, hi);
      real_ftruncate64(dst, st.st_size);
      f->lo = 1;
      f->hi = 0;
    }
    if (dst >= 0) close(dst);
    write_stats();
  }
  pthread_mutex_unlock(&lock);
}

ssize_t write(int fd, const void *buf, size_t count) {
  init();
  if (enabled != 1) return real_write(fd, buf, count);
  pthread_mutex_lock(&lock);
  struct file *f = lookup(fd);
  off_t at = f != NULL ? lseek(fd, 0, SEEK_CUR) : 0;
  ssize_t n = real_write(fd, buf, count);
  if (f != NULL && n > 0 && at >= 0) dirty(f, at, at + n);
  pthread_mutex_unlock(&lock);
  return n;
}

static ssize_t positional(ssize_t (*real)(int, const void *, size_t, off_t), int fd, const void *buf, size_t count, off_t offset) {
  init();
  if (enabled != 1) return real(fd, buf, count, offset);
  pthread_mutex_lock(&lock);
  struct file *f = lookup(fd);
  ssize_t n = real(fd, buf, count, offset);
  if (n > 0) dirty(f, offset, offset + n);
  pthread_mutex_unlock(&lock);
  return n;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
  init();
  return positional(real_pwrite, fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
  init();
  return positional(real_pwrite64, fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  init();
  if (enabled != 1) return real_writev(fd, iov, iovcnt);
  pthread_mutex_lock(&lock);
  struct file *f = lookup(fd);
  off_t at = f != NULL ? lseek(fd, 0, SEEK_CUR) : 0;
  ssize_t n = real_writev(fd, iov, iovcnt);
  if (f != NULL && n > 0 && at >= 0) dirty(f, at, at + n);
  pthread_mutex_unlock(&lock);
  return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
  init();
  if (enabled != 1) return real_pwritev(fd, iov, iovcnt, offset);
  pthread_mutex_lock(&lock);
  struct file *f = lookup(fd);
  ssize_t n = real_pwritev(fd, iov, iovcnt, offset);
  if (n > 0) dirty(f, offset, offset + n);
  pthread_mutex_unlock(&lock);
  return n;
}

static int truncate_with(int (*real)(int, off_t), int fd, off_t length) {
  init();
  if (enabled != 1) return real(fd, length);
  pthread_mutex_lock(&lock);
  struct file *f = lookup(fd);
  struct stat st;
  off_t before = (f != NULL && fstat(fd, &st) == 0) ? st.st_size : 0;
  int r = real(fd, length);
  /* Growing exposes zeros the shadow must get at the next sync; shrinking is applied by the sync's size. */
  if (r == 0 && f != NULL) {
    if (length > before) dirty(f, before, length);
    else dirty(f, length, length + 1);
  }
  pthread_mutex_unlock(&lock);
  return r;
}

int ftruncate(int fd, off_t length) {
  init();
  return truncate_with(real_ftruncate, fd, length);
}

int ftruncate64(int fd, off_t length) {
  init();
  return truncate_with(real_ftruncate64, fd, length);
}

int fsync(int fd) {
  init();
  int r = real_fsync(fd);
  if (r == 0 && enabled == 1) synced(fd);
  return r;
}

int fdatasync(int fd) {
  init();
  int r = real_fdatasync(fd);
  if (r == 0 && enabled == 1) synced(fd);
  return r;
}
