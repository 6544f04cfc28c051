/*
 * faultyfs: a FUSE 3 file system with one disk image that fails on demand.
 *
 * It exposes two files:
 *   /disk  a regular file of --size bytes, backed by --backing (a real file,
 *          so data written survives remounts); opened with direct_io so every
 *          read/write the loop device issues really reaches us and no page
 *          cache hides a failure.
 *   /ctl   the control file.  Writing
 *              fail <start> <length> [read|write|rw]
 *          makes reads/writes overlapping [start, start+length) return EIO;
 *              heal
 *          clears every range.  Reading it shows the ranges and counters.
 *
 * Usage: faultyfs --backing=FILE --size=BYTES [fuse options] MOUNTPOINT
 *
 * Built on demand by tests/harness/faulty.py:
 *   gcc -Wall -O2 -o faultyfs faultyfs.c $(pkg-config --cflags --libs fuse3)
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_RANGES 64
#define CTL_BUF 8192

enum { OP_READ = 1, OP_WRITE = 2, OP_RW = 3 };

struct fail_range {
	uint64_t start;
	uint64_t length;
	int ops;
};

static struct {
	char *backing;
	char *size_text;
	uint64_t size;
	int fd;
	time_t started;
	pthread_mutex_t lock;
	struct fail_range ranges[MAX_RANGES];
	int nranges;
	uint64_t reads, writes, failed_reads, failed_writes;
} fs = { .fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

static const struct fuse_opt faulty_opts[] = {
	{ "--backing=%s", offsetof(typeof(fs), backing), 0 },
	{ "--size=%s", offsetof(typeof(fs), size_text), 0 },
	FUSE_OPT_END
};

/* Counts the request and returns 1 when it must fail. */
static int account(int op, uint64_t off, uint64_t len)
{
	int fail = 0;

	pthread_mutex_lock(&fs.lock);
	for (int i = 0; i < fs.nranges; i++) {
		struct fail_range *r = &fs.ranges[i];
		if ((r->ops & op) && off < r->start + r->length &&
		    r->start < off + len) {
			fail = 1;
			break;
		}
	}
	if (op == OP_READ) {
		fs.reads++;
		fs.failed_reads += fail;
	} else {
		fs.writes++;
		fs.failed_writes += fail;
	}
	pthread_mutex_unlock(&fs.lock);
	return fail;
}

static int is_disk(const char *path) { return strcmp(path, "/disk") == 0; }
static int is_ctl(const char *path) { return strcmp(path, "/ctl") == 0; }

static void *faulty_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	/* Inode numbers and attributes are ours; no caching of a size that never changes is fine. */
	cfg->use_ino = 0;
	cfg->attr_timeout = 0;
	cfg->entry_timeout = 0;
	return NULL;
}

static int faulty_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	memset(st, 0, sizeof(*st));
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = fs.started;
	if (strcmp(path, "/") == 0) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else if (is_disk(path)) {
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_size = fs.size;
		st->st_blksize = 4096;
		st->st_blocks = fs.size / 512;
	} else if (is_ctl(path)) {
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_size = 0; /* generated on read; direct_io ignores the size */
	} else {
		return -ENOENT;
	}
	return 0;
}

static int faulty_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
			  struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off;
	(void)fi;
	(void)flags;
	if (strcmp(path, "/") != 0)
		return -ENOENT;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, "disk", NULL, 0, 0);
	fill(buf, "ctl", NULL, 0, 0);
	return 0;
}

static int faulty_open(const char *path, struct fuse_file_info *fi)
{
	if (!is_disk(path) && !is_ctl(path))
		return -ENOENT;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	return 0;
}

/* Truncating to the current size is what some tools do on open(O_TRUNC)-less paths; other sizes are refused. */
static int faulty_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	(void)fi;
	if (is_ctl(path))
		return 0;
	if (!is_disk(path))
		return -ENOENT;
	return (uint64_t)size == fs.size ? 0 : -EPERM;
}

static int ctl_render(char *out, size_t cap)
{
	size_t n = 0;

	pthread_mutex_lock(&fs.lock);
	n += snprintf(out + n, cap - n,
		      "reads %" PRIu64 "\nwrites %" PRIu64 "\nfailed_reads %" PRIu64
		      "\nfailed_writes %" PRIu64 "\n",
		      fs.reads, fs.writes, fs.failed_reads, fs.failed_writes);
	for (int i = 0; i < fs.nranges && n < cap; i++) {
		struct fail_range *r = &fs.ranges[i];
		const char *ops = r->ops == OP_RW ? "rw" : r->ops == OP_READ ? "read" : "write";
		n += snprintf(out + n, cap - n, "fail %" PRIu64 " %" PRIu64 " %s\n", r->start,
			      r->length, ops);
	}
	pthread_mutex_unlock(&fs.lock);
	return n < cap ? (int)n : (int)cap - 1;
}

static int faulty_read(const char *path, char *buf, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	if (is_ctl(path)) {
		char text[CTL_BUF];
		int len = ctl_render(text, sizeof(text));
		if (off >= len)
			return 0;
		if ((size_t)(len - off) < size)
			size = len - off;
		memcpy(buf, text + off, size);
		return size;
	}
	if (!is_disk(path))
		return -ENOENT;
	if ((uint64_t)off >= fs.size)
		return 0;
	if ((uint64_t)off + size > fs.size)
		size = fs.size - off;
	if (account(OP_READ, off, size))
		return -EIO;
	size_t done = 0;
	while (done < size) {
		ssize_t got = pread(fs.fd, buf + done, size - done, off + done);
		if (got < 0)
			return -errno;
		if (got == 0) { /* sparse tail of the backing file: zeros */
			memset(buf + done, 0, size - done);
			break;
		}
		done += got;
	}
	return size;
}

/* Parses one command line; returns 0 or a negative errno. */
static int ctl_command(char *line)
{
	char word[16], opname[16] = "rw";
	unsigned long long start, length;

	if (sscanf(line, "%15s", word) != 1)
		return 0; /* blank line */
	if (strcmp(word, "heal") == 0) {
		pthread_mutex_lock(&fs.lock);
		fs.nranges = 0;
		pthread_mutex_unlock(&fs.lock);
		return 0;
	}
	if (strcmp(word, "fail") != 0)
		return -EINVAL;
	int n = sscanf(line, "%*s %llu %llu %15s", &start, &length, opname);
	if (n < 2 || length == 0)
		return -EINVAL;
	int ops = strcmp(opname, "read") == 0 ? OP_READ :
		  strcmp(opname, "write") == 0 ? OP_WRITE :
		  strcmp(opname, "rw") == 0 ? OP_RW : 0;
	if (!ops)
		return -EINVAL;
	pthread_mutex_lock(&fs.lock);
	int err = 0;
	if (fs.nranges == MAX_RANGES)
		err = -ENOSPC;
	else
		fs.ranges[fs.nranges++] = (struct fail_range){ start, length, ops };
	pthread_mutex_unlock(&fs.lock);
	return err;
}

static int faulty_write(const char *path, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	(void)fi;
	if (is_ctl(path)) {
		char text[CTL_BUF];
		if (size >= sizeof(text))
			return -EFBIG;
		memcpy(text, buf, size);
		text[size] = '\0';
		for (char *save, *line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			int err = ctl_command(line);
			if (err) {
				fprintf(stderr, "faultyfs: bad ctl command: %s\n", line);
				return err;
			}
		}
		return size;
	}
	if (!is_disk(path))
		return -ENOENT;
	if ((uint64_t)off >= fs.size)
		return -ENOSPC;
	if ((uint64_t)off + size > fs.size)
		size = fs.size - off;
	if (account(OP_WRITE, off, size))
		return -EIO;
	size_t done = 0;
	while (done < size) {
		ssize_t put = pwrite(fs.fd, buf + done, size - done, off + done);
		if (put < 0)
			return -errno;
		done += put;
	}
	return size;
}

static int faulty_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)fi;
	if (!is_disk(path))
		return 0;
	return (datasync ? fdatasync(fs.fd) : fsync(fs.fd)) ? -errno : 0;
}

/* The loop device turns discard and write-zeroes into fallocate; pass them through. */
static int faulty_fallocate(const char *path, int mode, off_t off, off_t len,
			    struct fuse_file_info *fi)
{
	(void)fi;
	if (!is_disk(path))
		return -EOPNOTSUPP;
	if ((uint64_t)(off + len) > fs.size)
		return -ENOSPC;
	return fallocate(fs.fd, mode, off, len) ? -errno : 0;
}

static const struct fuse_operations faulty_ops = {
	.init = faulty_init,
	.getattr = faulty_getattr,
	.readdir = faulty_readdir,
	.open = faulty_open,
	.truncate = faulty_truncate,
	.read = faulty_read,
	.write = faulty_write,
	.fsync = faulty_fsync,
	.fallocate = faulty_fallocate,
};

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	char *end;

	if (fuse_opt_parse(&args, &fs, faulty_opts, NULL) == -1)
		return 2;
	if (!fs.backing || !fs.size_text) {
		fprintf(stderr, "usage: %s --backing=FILE --size=BYTES [fuse options] MOUNTPOINT\n",
			argv[0]);
		return 2;
	}
	fs.size = strtoull(fs.size_text, &end, 10);
	if (*end || fs.size == 0 || fs.size % 512) {
		fprintf(stderr, "faultyfs: --size=%s: need a positive multiple of 512\n", fs.size_text);
		return 2;
	}
	fs.fd = open(fs.backing, O_RDWR | O_CREAT, 0600);
	if (fs.fd < 0) {
		fprintf(stderr, "faultyfs: %s: %s\n", fs.backing, strerror(errno));
		return 1;
	}
	if (ftruncate(fs.fd, fs.size) < 0) {
		fprintf(stderr, "faultyfs: %s: cannot size to %" PRIu64 ": %s\n", fs.backing,
			fs.size, strerror(errno));
		return 1;
	}
	fs.started = time(NULL);
	int ret = fuse_main(args.argc, args.argv, &faulty_ops, NULL);
	fuse_opt_free_args(&args);
	close(fs.fd);
	return ret;
}
