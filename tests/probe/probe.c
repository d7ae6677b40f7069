/* probe: what may a process do here? One line per fact or attack, "NAME RESULT [detail]", where RESULT
 * is a value (facts), OK (the attempt succeeded) or the errno's name (EPERM, EROFS, ...).
 *
 * Built static (gcc -static) by tests/probe.py so that it runs in any rootfs (busybox, a bundle).
 * Safe by construction: it only reads, opens files without writing to them, creates nodes and mount
 * points in the scratch directory (-d), and mounts only in its own mount namespace. It never writes a
 * sysctl or a cgroup file: "write_proc_sys OK" means open(O_WRONLY) succeeded, which is what a
 * read-only mount or a missing permission refuses.
 *
 * usage: probe [-d SCRATCH] [-b MAJOR:MINOR] [-H FILE] [-c CGROUP_FILE] [-m MARKER] [ATTACK ...]
 *   -b  a block device to mknod/open/mount (a loop device the test made; never the host's disk)
 *   -H  a file on that device's filesystem, visible in here (bind-mounted): the handle attack's way in
 *   -c  the pids.max the container must not be able to write
 *   -m  the name of the marker file at the root of the device's filesystem
 * With no ATTACK, every one runs. Exit status 0 unless the arguments are wrong.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/kcmp.h>
#include <linux/mount.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *scratch = "/tmp";
static const char *blockdev = NULL;   /* "7:3" */
static const char *handle_file = NULL;
static const char *pids_file = NULL;
static const char *marker = "marker";

static const char *masked[] = {
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap", NULL};

static const char *err(int e) {
    const char *n = strerrorname_np(e);
    return n ? n : "EUNKNOWN";
}

static void result(const char *name, int rc, const char *detail) {
    if (rc < 0)
        printf("%s %s\n", name, err(errno));
    else if (detail && *detail)
        printf("%s OK %s\n", name, detail);
    else
        printf("%s OK\n", name);
    fflush(stdout);
}

/* The first word of a file (the marker's contents), or "" */
static void first_word(int dirfd, const char *path, char *out, size_t size) {
    out[0] = 0;
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    if (n < 0)
        n = 0;
    out[n] = 0;
    out[strcspn(out, " \n\t")] = 0;
}

static void facts(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    if (!f) {
        printf("status %s\n", err(errno));
        return;
    }
    while (fgets(line, sizeof line, f)) {
        static const char *keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp",
                                     "NoNewPrivs", NULL};
        for (int i = 0; keys[i]; i++) {
            size_t k = strlen(keys[i]);
            if (!strncmp(line, keys[i], k) && line[k] == ':') {
                char *v = line + k + 1;
                v += strspn(v, " \t");
                printf("%s %s", keys[i], v);
            }
        }
    }
    fclose(f);
    printf("uid %d\n", (int)getuid());
    fflush(stdout);
}

static int make_blockdev(char *path, size_t size) {
    unsigned maj, min;
    snprintf(path, size, "%s/probe-blockdev", scratch);
    if (!blockdev || sscanf(blockdev, "%u:%u", &maj, &min) != 2) {
        errno = EINVAL;
        return -1;
    }
    unlink(path);
    return mknod(path, S_IFBLK | 0600, makedev(maj, min));
}

static void attack_blockdev(void) {
    char path[512], detail[128] = "";
    int null = open("/dev/null", O_RDWR); /* the default devices must keep working */
    result("open_devnull", null, NULL);
    if (null >= 0)
        close(null);
    int rc = make_blockdev(path, sizeof path);
    result("mknod_blockdev", rc, NULL);
    if (rc < 0)
        return;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        char buf[1024];
        ssize_t n = read(fd, buf, sizeof buf);
        snprintf(detail, sizeof detail, "read=%zd", n);
        close(fd);
    }
    result("open_blockdev", fd, detail);
    unlink(path);
}

static void attack_mount(void) {
    char dev[512], dir[512], detail[160] = "", word[64];
    snprintf(dir, sizeof dir, "%s/probe-mnt", scratch);
    mkdir(dir, 0700);
    int rc;
    if (blockdev && make_blockdev(dev, sizeof dev) == 0) {
        rc = mount(dev, dir, "ext4", MS_RDONLY, NULL);
        if (rc == 0) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, marker);
            first_word(AT_FDCWD, path, word, sizeof word);
            snprintf(detail, sizeof detail, "marker=%s", word);
        }
        int e = errno;
        unlink(dev);
        errno = e;
    } else {
        rc = mount("probe", dir, "tmpfs", 0, "size=16k");
    }
    result("mount", rc, detail);
    if (rc == 0)
        umount2(dir, MNT_DETACH);
    rmdir(dir);
}

static void attack_fsopen(void) {
    char dev[512], detail[160] = "", word[64];
    int have_dev = blockdev && make_blockdev(dev, sizeof dev) == 0;
    int fs = syscall(SYS_fsopen, have_dev ? "ext4" : "tmpfs", FSOPEN_CLOEXEC);
    int rc = fs;
    if (fs >= 0) {
        if (have_dev)
            rc = syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", dev, 0);
        if (rc >= 0 && have_dev)
            rc = syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "ro", NULL, 0);
        if (rc >= 0)
            rc = syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
        if (rc >= 0) {
            int mnt = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY);
            rc = mnt;
            if (mnt >= 0) {
                if (have_dev) {
                    first_word(mnt, marker, word, sizeof word);
                    snprintf(detail, sizeof detail, "marker=%s", word);
                }
                close(mnt);
            }
        }
        int e = errno;
        close(fs);
        errno = e;
    }
    if (have_dev) {
        int e = errno;
        unlink(dev);
        errno = e;
    }
    result("fsopen", rc, detail);
}

/* "shocker": a file bind-mounted from filesystem X gives a mount fd on X; a forged handle for inode 2
 * (ext4's root directory, generation 0) opens X's root, from which any file of X can be read. */
static void attack_handle(void) {
    char detail[160] = "", word[64];
    if (!handle_file) {
        errno = EINVAL;
        result("open_by_handle_at", -1, NULL);
        return;
    }
    int mfd = open(handle_file, O_RDONLY);
    if (mfd < 0) {
        result("open_by_handle_at", -1, NULL);
        return;
    }
    struct {
        struct file_handle h;
        unsigned int ino_gen[2];
    } fh;
    fh.h.handle_bytes = 8;
    fh.h.handle_type = 1; /* FILEID_INO32_GEN */
    fh.ino_gen[0] = 2;
    fh.ino_gen[1] = 0;
    int root = open_by_handle_at(mfd, &fh.h, O_RDONLY | O_DIRECTORY);
    if (root >= 0) {
        first_word(root, marker, word, sizeof word);
        snprintf(detail, sizeof detail, "marker=%s", word);
        close(root);
    }
    result("open_by_handle_at", root, detail);
    close(mfd);
}

static void attack_keyctl(void) {
    /* KEYCTL_GET_KEYRING_ID of the session keyring: harmless, and refused by Docker's profile */
    long rc = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* KEY_SPEC_SESSION_KEYRING */, 0);
    result("keyctl", rc < 0 ? -1 : 0, NULL);
}

static void attack_bpf(void) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    int fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    result("bpf", fd, NULL);
    if (fd >= 0)
        close(fd);
}

static void attack_unshare(void) {
    /* in a child, so that the probe's own namespaces stay as they are */
    int p[2];
    if (pipe(p) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        int rc = unshare(CLONE_NEWNS);
        int e = rc < 0 ? errno : 0;
        write(p[1], &e, sizeof e);
        _exit(0);
    }
    int e = EIO;
    close(p[1]);
    read(p[0], &e, sizeof e);
    close(p[0]);
    waitpid(pid, NULL, 0);
    errno = e;
    result("unshare_mnt", e ? -1 : 0, NULL);
}

static void attack_kcmp(void) {
    pid_t me = getpid();
    long rc = syscall(SYS_kcmp, me, me, KCMP_FILE, 0, 0);
    result("kcmp", rc < 0 ? -1 : 0, NULL);
}

static void attack_net_admin(void) {
    /* bring lo up: a no-op when it is up already, refused without CAP_NET_ADMIN */
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int rc = s < 0 ? -1 : ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    result("net_admin", rc, NULL);
    if (s >= 0)
        close(s);
}

static void open_for_write(const char *name, const char *path) {
    if (!path) {
        errno = EINVAL;
        result(name, -1, NULL);
        return;
    }
    int fd = open(path, O_WRONLY); /* never written to: see the header */
    result(name, fd, NULL);
    if (fd >= 0)
        close(fd);
}

static void attack_remount_sys(void) {
    /* MS_REMOUNT|MS_BIND changes only this mount's flags (not the sysfs superblock) */
    int rc = mount(NULL, "/sys", NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    result("remount_sys", rc, NULL);
}

static void attack_masked(void) {
    for (int i = 0; masked[i]; i++) {
        char name[128], detail[32];
        struct stat st;
        snprintf(name, sizeof name, "masked:%s", masked[i]);
        if (stat(masked[i], &st) < 0) {
            result(name, -1, NULL);
            continue;
        }
        long total = 0;
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(masked[i]);
            if (!d) {
                result(name, -1, NULL);
                continue;
            }
            struct dirent *e;
            while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                    total++;
            closedir(d);
        } else {
            int fd = open(masked[i], O_RDONLY);
            if (fd < 0) {
                result(name, -1, NULL);
                continue;
            }
            char buf[4096];
            ssize_t n = read(fd, buf, sizeof buf);
            close(fd);
            if (n < 0) {
                result(name, -1, NULL);
                continue;
            }
            total = n;
        }
        snprintf(detail, sizeof detail, "size=%ld", total);
        result(name, 0, detail);
    }
}

static void attack_proc_sys(void) { open_for_write("write_proc_sys", "/proc/sys/kernel/core_pattern"); }
static void attack_pids(void) { open_for_write("write_pids_max", pids_file); }

static const struct {
    const char *name;
    void (*fn)(void);
} attacks[] = {
    {"facts", facts},           {"blockdev", attack_blockdev},   {"mount", attack_mount},
    {"fsopen", attack_fsopen},  {"handle", attack_handle},       {"keyctl", attack_keyctl},
    {"bpf", attack_bpf},        {"unshare", attack_unshare},     {"kcmp", attack_kcmp},
    {"net_admin", attack_net_admin}, {"proc_sys", attack_proc_sys}, {"remount_sys", attack_remount_sys},
    {"pids", attack_pids},      {"masked", attack_masked},       {NULL, NULL},
};

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "d:b:H:c:m:")) != -1) {
        switch (opt) {
        case 'd': scratch = optarg; break;
        case 'b': blockdev = optarg; break;
        case 'H': handle_file = optarg; break;
        case 'c': pids_file = optarg; break;
        case 'm': marker = optarg; break;
        default:
            fprintf(stderr, "usage: %s [-d DIR] [-b MAJ:MIN] [-H FILE] [-c FILE] [-m NAME] [ATTACK...]\n", argv[0]);
            return 2;
        }
    }
    if (optind == argc) {
        for (int i = 0; attacks[i].name; i++)
            attacks[i].fn();
        return 0;
    }
    for (int a = optind; a < argc; a++) {
        int found = 0;
        for (int i = 0; attacks[i].name; i++)
            if (!strcmp(argv[a], attacks[i].name)) {
                attacks[i].fn();
                found = 1;
            }
        if (!found) {
            fprintf(stderr, "probe: unknown attack %s\n", argv[a]);
            return 2;
        }
    }
    return 0;
}
