/* faultfs: an LD_PRELOAD shim that makes the store's disk fail on demand,
 * for the durability tests (never linked into hookwork).
 *
 *   HW_FAULT_CTL=FILE   the control file; its first word is the mode:
 *                         ok      everything passes (also: no file)
 *                         eio     fsync/fdatasync fail with EIO
 *                         enospc  write/pwrite/writev fail with ENOSPC
 *                         stall   fsync/fdatasync sleep until the mode changes
 *   HW_FAULT_PATH=DIR   only files whose path starts with DIR are affected
 *                       (default: every regular file); PATH$ (a trailing
 *                       '$') is that one file only (the database file
 *                       without its -wal, say)
 *   HW_FAULT_LOG=FILE   appends "THREAD fsync|fdatasync PATH" for every sync of
 *                       an affected file (THREAD: the calling thread's name),
 *                       to see who syncs what
 * The control file is read at most every 10 ms (a CLOCK_MONOTONIC_COARSE
 * check), so a test flips the disk by rewriting it.  SIGUSR2 forces a
 * re-read at once.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { M_OK, M_EIO, M_ENOSPC, M_STALL };

static atomic_int mode;
static atomic_llong next_check; /* ms, monotonic coarse */
static atomic_int force;
static const char *ctl, *prefix;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_usr2(int sig) {
  (void) sig;
  atomic_store(&force, 1);
}

__attribute__((constructor)) static void init(void) {
  ctl = getenv("HW_FAULT_CTL");
  prefix = getenv("HW_FAULT_PATH");
  signal(SIGUSR2, on_usr2);
}

static int current(void) {
  long long now = now_ms();
  if (ctl == NULL)
    return M_OK;
  if (atomic_exchange(&force, 0) || now >= atomic_load(&next_check)) {
    char buf[16] = {0};
    int fd, m = M_OK;
    ssize_t n;
    atomic_store(&next_check, now + 10);
    fd = open(ctl, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      n = read(fd, buf, sizeof buf - 1);
      close(fd);
      if (n > 0) {
        if (strncmp(buf, "eio", 3) == 0) m = M_EIO;
        else if (strncmp(buf, "enospc", 6) == 0) m = M_ENOSPC;
        else if (strncmp(buf, "stall", 5) == 0) m = M_STALL;
      }
    }
    atomic_store(&mode, m);
  }
  return atomic_load(&mode);
}

/* Whether fd is a regular file under HW_FAULT_PATH. */
static int ours(int fd) {
  char link[64], path[4096];
  ssize_t n;
  size_t len;
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
    return 0;
  if (prefix == NULL)
    return 1;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink(link, path, sizeof path - 1);
  if (n <= 0)
    return 0;
  path[n] = '\0';
  len = strlen(prefix);
  if (len > 0 && prefix[len - 1] == '$')
    return (size_t) n == len - 1 && strncmp(path, prefix, len - 1) == 0;
  return strncmp(path, prefix, len) == 0;
}

#define REAL(ret, name, args) \
  static ret(*real_##name) args; \
  if (real_##name == NULL) \
    real_##name = (ret(*) args) dlsym(RTLD_NEXT, #name)

/* HW_FAULT_LOG: one line per sync of an affected file (O_APPEND: lines
 * of concurrent threads do not mix). */
static void log_sync(int fd, const char *what) {
  const char *logp = getenv("HW_FAULT_LOG");
  char link[64], path[4096], name[32] = "?", line[4200];
  ssize_t n;
  int lf, cf;
  if (logp == NULL || !ours(fd))
    return;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink(link, path, sizeof path - 1);
  path[n > 0 ? n : 0] = '\0';
  cf = open("/proc/thread-self/comm", O_RDONLY | O_CLOEXEC);
  if (cf >= 0) {
    n = read(cf, name, sizeof name - 1);
    name[n > 0 ? n : 0] = '\0';
    if (n > 0 && name[n - 1] == '\n')
      name[n - 1] = '\0';
    close(cf);
  }
  lf = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (lf < 0)
    return;
  n = snprintf(line, sizeof line, "%s %s %s\n", name, what, path);
  if (n > 0 && (size_t) n < sizeof line && write(lf, line, (size_t) n) < 0)
    n = 0; /* nothing to do: the log is best effort */
  close(lf);
}

static int sync_fault(int fd) {
  int m = current();
  if (m == M_EIO && ours(fd)) {
    errno = EIO;
    return -1;
  }
  while (m == M_STALL && ours(fd)) {
    usleep(5000);
    m = current();
  }
  return 0;
}

static int write_fault(int fd) {
  if (current() == M_ENOSPC && ours(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return 0;
}

int fsync(int fd) {
  REAL(int, fsync, (int));
  log_sync(fd, "fsync");
  if (sync_fault(fd) != 0)
    return -1;
  return real_fsync(fd);
}

int fdatasync(int fd) {
  REAL(int, fdatasync, (int));
  log_sync(fd, "fdatasync");
  if (sync_fault(fd) != 0)
    return -1;
  return real_fdatasync(fd);
}

ssize_t write(int fd, const void *buf, size_t n) {
  REAL(ssize_t, write, (int, const void *, size_t));
  if (fd > 2 && write_fault(fd) != 0)
    return -1;
  return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(ssize_t, pwrite, (int, const void *, size_t, off_t));
  if (write_fault(fd) != 0)
    return -1;
  return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  REAL(ssize_t, pwrite64, (int, const void *, size_t, off_t));
  if (write_fault(fd) != 0)
    return -1;
  return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  REAL(ssize_t, writev, (int, const struct iovec *, int));
  if (fd > 2 && write_fault(fd) != 0)
    return -1;
  return real_writev(fd, iov, cnt);
}
