/*
 * peripety --bpf: storage error tracepoints, loaded with bcc.
 *
 * Only error paths are probed, so successful I/O costs nothing: every probe
 * either sits on a tracepoint that fires on failure only (block_rq_error,
 * scsi_dispatch_cmd_error/_timeout, scsi_eh_wakeup, ext4_error) or returns
 * before touching the ring buffer when the completion status is success.
 *
 * The loader (peripety/tracepoints/loader.py) compiles a probe in only when
 * the attach plan defines its macro (-DPRPT_BLOCK_RQ_ERROR, ...), because bcc
 * cannot compile a TRACEPOINT_PROBE for a tracepoint this kernel lacks. It
 * also defines the kind numbers (PRPT_KIND_*), the ring buffer size and the
 * expected struct sizes (PRPT_SIZEOF_*), all from Python-side tables, so the
 * C structs below and the ctypes mirrors in decode.py cannot drift apart
 * silently: a mismatch fails the compile.
 *
 * Only tracepoint fields (args->...) are read, whose layout bcc takes from
 * the running kernel's tracefs format files: no kernel struct is touched.
 *
 * Time: bpf_ktime_get_ns() is CLOCK_MONOTONIC. /dev/kmsg stamps records with
 * local_clock(), a different clock; the offset measured between the two is
 * documented in peripety/tracepoints/decode.py and clock.py.
 */

#ifndef PRPT_KIND_COUNT
#error "compile through peripety.tracepoints.loader: PRPT_KIND_* defines are missing"
#endif

/* Common head of every sample; kind selects the struct that follows. */
struct prpt_head {
	u32 kind;
	u32 dev;	/* kernel dev_t: major = dev >> 20, minor = dev & 0xfffff */
	u64 ktime_ns;	/* bpf_ktime_get_ns(), CLOCK_MONOTONIC */
};

struct prpt_block_event {
	struct prpt_head head;
	u64 sector;
	u32 nr_sector;
	s32 error;		/* negative errno */
	char rwbs[16];
	u32 from_complete;	/* 1: block_rq_complete fallback, filtered here */
	u32 _pad;
};

/* scsi_dispatch_cmd_error / _timeout / _done, scsi_eh_wakeup (host only). */
struct prpt_scsi_event {
	struct prpt_head head;
	u32 host_no;
	u32 channel;
	u32 id;
	u32 lun;
	s32 result;		/* rtn for scsi_dispatch_cmd_error */
	u32 opcode;
	u32 cmd_len;
	u8 sense_key;
	u8 asc;
	u8 ascq;
	u8 has_sense;		/* the kernel's tracepoint carries sense fields */
	u8 cdb[16];
};

struct prpt_nvme_event {
	struct prpt_head head;
	char disk[32];
	s32 ctrl_id;
	s32 qid;
	s32 cid;
	u16 status;		/* NVMe status without the phase bit */
	u8 retries;
	u8 flags;
	u64 result;
};

struct prpt_ext4_event {
	struct prpt_head head;
	u32 line;
	u32 _pad;
	char function[48];
};

struct prpt_xfs_event {
	struct prpt_head head;
	s64 bno;
	u32 length;
	u32 flags;
	s32 error;		/* negative errno */
	u32 _pad;
	u64 caller_ip;
};

_Static_assert(sizeof(struct prpt_block_event) == PRPT_SIZEOF_BLOCK, "block layout differs from decode.py");
_Static_assert(sizeof(struct prpt_scsi_event) == PRPT_SIZEOF_SCSI, "scsi layout differs from decode.py");
_Static_assert(sizeof(struct prpt_nvme_event) == PRPT_SIZEOF_NVME, "nvme layout differs from decode.py");
_Static_assert(sizeof(struct prpt_ext4_event) == PRPT_SIZEOF_EXT4, "ext4 layout differs from decode.py");
_Static_assert(sizeof(struct prpt_xfs_event) == PRPT_SIZEOF_XFS, "xfs layout differs from decode.py");

BPF_RINGBUF_OUTPUT(events, PRPT_RINGBUF_PAGES);

/*
 * Samples the ring buffer had no room for, per kind. Per-CPU so the error
 * path takes no atomic; user space sums the CPUs and reports the total.
 */
BPF_PERCPU_ARRAY(lost, u64, PRPT_KIND_COUNT);

static __always_inline void count_lost(u32 kind)
{
	u64 *n = lost.lookup(&kind);

	if (n)
		(*n)++;
}

/*
 * Reserve a sample of `size` bytes, zeroed (no stale ring memory reaches
 * user space) with its head filled in; NULL, counted as lost for `kind`,
 * when the ring buffer is full. Probes fill the rest and submit.
 */
static __always_inline void *reserve_sample(u32 size, u32 kind, u32 dev)
{
	struct prpt_head *head = events.ringbuf_reserve(size);

	if (!head) {
		count_lost(kind);
		return 0;
	}
	__builtin_memset(head, 0, size);
	head->kind = kind;
	head->dev = dev;
	head->ktime_ns = bpf_ktime_get_ns();
	return head;
}

/* ---- block ------------------------------------------------------------ */

#if defined(PRPT_BLOCK_RQ_ERROR) || defined(PRPT_BLOCK_RQ_COMPLETE)
static __always_inline int emit_block(u32 dev, u64 sector, u32 nr_sector, s32 error,
				      const char *rwbs, u32 rwbs_size, u32 from_complete)
{
	struct prpt_block_event *ev = reserve_sample(sizeof(*ev), PRPT_KIND_BLOCK_RQ_ERROR, dev);

	if (!ev)
		return 0;
	ev->sector = sector;
	ev->nr_sector = nr_sector;
	ev->error = error;
	bpf_probe_read_kernel(ev->rwbs, rwbs_size < sizeof(ev->rwbs) ? rwbs_size : sizeof(ev->rwbs) - 1, rwbs);
	ev->from_complete = from_complete;
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif

#ifdef PRPT_BLOCK_RQ_ERROR
/* Fires only for failed requests (5.18+), under the same condition as the
 * kernel's "I/O error, dev ..." line, but never rate limited. */
TRACEPOINT_PROBE(block, block_rq_error)
{
	return emit_block(args->dev, args->sector, args->nr_sector, args->error,
			  args->rwbs, sizeof(args->rwbs), 0);
}
#elif defined(PRPT_BLOCK_RQ_COMPLETE)
/* Older kernels: every completion passes here; keep failures only. */
TRACEPOINT_PROBE(block, block_rq_complete)
{
	if (args->error == 0)
		return 0;
	return emit_block(args->dev, args->sector, args->nr_sector, args->error,
			  args->rwbs, sizeof(args->rwbs), 1);
}
#endif

/* ---- SCSI ------------------------------------------------------------- */

/* One body for the three command tracepoints; `status` is result or rtn. */
#define PRPT_FILL_SCSI_CMD(ev, status)						\
	do {									\
		(ev)->host_no = args->host_no;					\
		(ev)->channel = args->channel;					\
		(ev)->id = args->id;						\
		(ev)->lun = args->lun;						\
		(ev)->result = (status);					\
		(ev)->opcode = args->opcode;					\
		(ev)->cmd_len = args->cmd_len;					\
		TP_DATA_LOC_READ_CONST((ev)->cdb, cmnd, sizeof((ev)->cdb));	\
	} while (0)

#define PRPT_FILL_SCSI_SENSE(ev)						\
	do {									\
		(ev)->sense_key = args->sense_key;				\
		(ev)->asc = args->asc;						\
		(ev)->ascq = args->ascq;					\
		(ev)->has_sense = 1;						\
	} while (0)

#ifdef PRPT_SCSI_DISPATCH_CMD_ERROR
TRACEPOINT_PROBE(scsi, scsi_dispatch_cmd_error)
{
	struct prpt_scsi_event *ev = reserve_sample(sizeof(*ev), PRPT_KIND_SCSI_CMD_ERROR, 0);

	if (!ev)
		return 0;
	PRPT_FILL_SCSI_CMD(ev, args->rtn);
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif

#ifdef PRPT_SCSI_DISPATCH_CMD_TIMEOUT
TRACEPOINT_PROBE(scsi, scsi_dispatch_cmd_timeout)
{
	struct prpt_scsi_event *ev = reserve_sample(sizeof(*ev), PRPT_KIND_SCSI_CMD_TIMEOUT, 0);

	if (!ev)
		return 0;
	PRPT_FILL_SCSI_CMD(ev, args->result);
#ifdef PRPT_SCSI_DISPATCH_CMD_TIMEOUT_SENSE
	PRPT_FILL_SCSI_SENSE(ev);
#endif
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif

#ifdef PRPT_SCSI_DISPATCH_CMD_DONE
/* Every SCSI completion passes here: reject success before reserving. */
TRACEPOINT_PROBE(scsi, scsi_dispatch_cmd_done)
{
	struct prpt_scsi_event *ev;

	if (args->result == 0)
		return 0;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_SCSI_CMD_DONE, 0);
	if (!ev)
		return 0;
	PRPT_FILL_SCSI_CMD(ev, args->result);
#ifdef PRPT_SCSI_DISPATCH_CMD_DONE_SENSE
	PRPT_FILL_SCSI_SENSE(ev);
#endif
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif

#ifdef PRPT_SCSI_EH_WAKEUP
TRACEPOINT_PROBE(scsi, scsi_eh_wakeup)
{
	struct prpt_scsi_event *ev = reserve_sample(sizeof(*ev), PRPT_KIND_SCSI_EH_WAKEUP, 0);

	if (!ev)
		return 0;
	ev->host_no = args->host_no;
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif

/* ---- NVMe ------------------------------------------------------------- */

#ifdef PRPT_NVME_COMPLETE_RQ
/* Every NVMe completion passes here: reject success before reserving. */
TRACEPOINT_PROBE(nvme, nvme_complete_rq)
{
	struct prpt_nvme_event *ev;

	if (args->status == 0)
		return 0;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_NVME_COMPLETE_RQ, 0);
	if (!ev)
		return 0;
	bpf_probe_read_kernel(ev->disk, sizeof(ev->disk) - 1, args->disk);
	ev->ctrl_id = args->ctrl_id;
	ev->qid = args->qid;
	ev->cid = args->cid;
	ev->status = args->status;
	ev->retries = args->retries;
	ev->flags = args->flags;
	ev->result = args->result;
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif

/* ---- file systems ----------------------------------------------------- */

#ifdef PRPT_EXT4_ERROR
TRACEPOINT_PROBE(ext4, ext4_error)
{
	struct prpt_ext4_event *ev = reserve_sample(sizeof(*ev), PRPT_KIND_EXT4_ERROR, args->dev);

	if (!ev)
		return 0;
	ev->line = args->line;
	/* `function` points at a string constant inside the kernel image. */
	bpf_probe_read_kernel_str(ev->function, sizeof(ev->function), (const void *)args->function);
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif

#ifdef PRPT_XFS_BUF_IOERROR
/*
 * The tracefs format names xfs's own types, which no header bcc includes
 * defines; bcc copies the names into the args struct it generates.
 */
typedef s64 xfs_daddr_t;
typedef void *xfs_failaddr_t;

/* xfs also traces the clearing of a buffer error (error 0): skip those. */
TRACEPOINT_PROBE(xfs, xfs_buf_ioerror)
{
	struct prpt_xfs_event *ev;

	if (args->error == 0)
		return 0;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_XFS_BUF_IOERROR, args->dev);
	if (!ev)
		return 0;
	ev->bno = args->bno;
	ev->length = args->length;
	ev->flags = args->flags;
	ev->error = args->error;
	ev->caller_ip = (u64)args->caller_ip;
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif
