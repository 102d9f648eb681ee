// A training run's output directory (-o): one trainer at a time, and what killed runs left behind.
// run_dir_claim creates it, takes an exclusive lock for the whole run (flock on DIR/.lock, which
// names the holder) and removes the temporary files of writes whose process died. Two trainers
// writing checkpoints into one directory could otherwise mark a step DONE whose model file is
// one run's and state file the other's.
#ifndef LLMC_RUN_DIR_H
#define LLMC_RUN_DIR_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "utils.h"

// Whether process pid is alive on this host (a process of another user counts as alive).
static inline int run_dir_pid_alive(long pid) {
    if (pid <= 0 || pid != (long)(pid_t)pid) return 0;
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

// Reads "PID HOST" from the lock file; returns the PID (0 if none yet) and fills host.
static inline long run_dir_read_holder(int fd, char *host, size_t host_size) {
    char text[512];
    ssize_t got = pread(fd, text, sizeof(text) - 1, 0);
    long pid = 0;
    host[0] = '\0';
    if (got <= 0) return 0;
    text[got] = '\0';
    char name[256];
    if (sscanf(text, "%ld %255s", &pid, name) != 2) return 0;
    snprintf(host, host_size, "%s", name);
    return pid;
}

// Takes the exclusive lock on dir/.lock, held until the process exits (the descriptor stays open;
// the kernel releases a flock when its holder ends, however it ends). If another trainer holds
// it: one error line naming that trainer's PID and host.
static inline void run_dir_lock(const char *dir) {
    char path[4096 + 8];
    snprintf(path, sizeof(path), "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fatal("%s: cannot open the lock file: %s", path, strerror(errno));
    char my_host[256] = "unknown";
    gethostname(my_host, sizeof(my_host) - 1);
    my_host[sizeof(my_host) - 1] = '\0';
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == ENOLCK || errno == EOPNOTSUPP) { // a file system without locks
            printf("warning: %s: cannot lock (%s): a second trainer on %s would not be stopped\n",
                   path, strerror(errno), dir);
            close(fd);
            return;
        }
        if (errno != EWOULDBLOCK) fatal("%s: flock failed: %s", path, strerror(errno));
        // the holder writes its PID just after it takes the lock, over the previous holder's:
        // wait a moment for a PID that is alive (another host's cannot be checked from here)
        char host[256];
        long pid = 0;
        for (int attempt = 0; attempt < 100; attempt++) {
            pid = run_dir_read_holder(fd, host, sizeof(host));
            if (pid > 0 && (strcmp(host, my_host) != 0 || run_dir_pid_alive(pid))) break;
            usleep(20000);
        }
        if (pid <= 0) {
            fatal("%s: the output directory %s is in use by another trainer (PID not yet "
                  "written): wait for it to end or choose another -o",
                  path, dir);
        }
        fatal("%s: the output directory %s is in use by another trainer, PID %ld on %s: wait for "
              "it to end or choose another -o",
              path, dir, pid, host);
    }
    char text[300];
    int length = snprintf(text, sizeof(text), "%ld %s\n", (long)getpid(), my_host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)length, 0) != (ssize_t)length) {
        fatal("%s: cannot write this trainer's PID: %s", path, strerror(errno));
    }
}

// Removes dir's files NAME.tmpPID (atomic_open's temporary files) whose process is no longer
// alive: what a killed or failed write left. Those of live processes are kept. Returns how many.
static inline int run_dir_remove_stale_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) fatal("%s: cannot list the output directory: %s", dir, strerror(errno));
    int removed = 0;
    double bytes = 0.0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        const char *suffix = NULL; // the last ".tmp"
        for (const char *p = strstr(entry->d_name, ".tmp"); p != NULL; p = strstr(p + 1, ".tmp")) {
            suffix = p;
        }
        if (suffix == NULL || suffix == entry->d_name) continue;
        const char *digits = suffix + 4;
        char *end;
        long pid = strtol(digits, &end, 10);
        // atomic_open writes getpid() with %d: anything else is not one of its files
        if (digits[0] < '0' || digits[0] > '9' || *end != '\0' || pid <= 0 || pid > INT_MAX) {
            continue;
        }
        if (pid == (long)getpid() || run_dir_pid_alive(pid)) continue;
        char path[4096 + 512];
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (unlink(path) != 0)
            fatal("%s: cannot remove a stale temporary file: %s", path, strerror(errno));
        removed++;
        bytes += (double)st.st_size;
    }
    closedir(d);
    if (removed > 0) {
        printf("%s: removed %d temporary file(s) of writes whose process died (%.1f MB)\n", dir,
               removed, bytes / 1e6);
    }
    return removed;
}

// Before a trainer reads or writes anything in dir: creates it, locks it for the whole run and
// removes stale temporary files. With several processes only rank 0 calls this (the others wait
// for it at a barrier): one holder per run, and a second run's rank 0 stops that whole run.
static inline void run_dir_claim(const char *dir) {
    make_dir_check(dir);
    run_dir_lock(dir);
    run_dir_remove_stale_temp_files(dir);
}

#endif // LLMC_RUN_DIR_H
