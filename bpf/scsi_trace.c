/*
 * peripety --bpf: storage error tracepoints, loaded with bcc.
 *
 * Only error paths are probed, so successful I/O costs nothing: every probe
 * either sits on a tracepoint that fires on failure only (block_rq_error,
 * scsi_dispatch_cmd_error/_timeout, scsi_eh_wakeup, ext4_error) or returns
 * before touching any map when the completion status is success.
 *
 * Each failure is counted in BPF arrays that user space reads as mapped
 * memory (per unit, kind, status and op, with its sectors as bitmaps: see
 * "counting" below), so counts stay exact at any rate and reading them
 * never stops a probe from running; only the first few failures per unit
 * and interval also go out as full samples through the ring buffer.
 *
 * Every kind of sample has one row in peripety/tracepoints/kinds.toml: its
 * number, the struct below it fills (a [layout.*] there, field for field),
 * its decoder, event type and merge key, and the probes below that produce
 * it. Adding a probe = a TRACEPOINT_PROBE here plus that one row
 * (doc/design.md, "Adding a probe").
 *
 * The loader (peripety/tracepoints/loader.py) compiles a probe in only when
 * the attach plan defines its macro (-DPRPT_BLOCK_RQ_ERROR, ...), because bcc
 * cannot compile a TRACEPOINT_PROBE for a tracepoint this kernel lacks. It
 * also defines the kind numbers (PRPT_KIND_*), the ring buffer size, the map
 * bounds and sample budget (PRPT_AGG_ENTRIES, PRPT_SAMPLE_BUDGET, ...: see
 * Tuning in loader.py) and the expected struct sizes (PRPT_SIZEOF_*), all
 * from kinds.toml, so the C structs below and the layouts there cannot
 * drift apart silently: a size mismatch fails the compile, and
 * tests/test_tracepoint_kinds.py compares every field's name and type.
 *
 * Only tracepoint fields (args->...) are read, whose layout bcc takes from
 * the running kernel's tracefs format files: no kernel struct is touched.
 *
 * Time: bpf_ktime_get_ns() is CLOCK_MONOTONIC. /dev/kmsg stamps records with
 * local_clock(), a different clock; the offset measured between the two is
 * documented in peripety/tracepoints/decode.py.
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

_Static_assert(sizeof(struct prpt_head) == PRPT_SIZEOF_HEAD, "head layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_block_event) == PRPT_SIZEOF_BLOCK, "block layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_scsi_event) == PRPT_SIZEOF_SCSI, "scsi layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_nvme_event) == PRPT_SIZEOF_NVME, "nvme layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_ext4_event) == PRPT_SIZEOF_EXT4, "ext4 layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_xfs_event) == PRPT_SIZEOF_XFS, "xfs layout differs from kinds.toml");

BPF_RINGBUF_OUTPUT(events, PRPT_RINGBUF_PAGES);

/* ---- counting ----------------------------------------------------------
 *
 * Every failure is counted here, whatever the ring buffer does; the ring
 * carries only the first PRPT_SAMPLE_BUDGET full samples per unit (device,
 * SCSI target, NVMe disk) and PRPT_SAMPLE_INTERVAL_NS, for a human to read.
 *
 * No bpf() syscall reads or resets a count. While a process is inside a
 * bpf() map syscall (lookup, update, delete, ...) on a CPU, the kernel
 * raises bpf_prog_active there (bpf_disable_instrumentation) and runs no
 * TRACEPOINT program that fires on that CPU meanwhile: newer kernels count
 * such a skip in the program's recursion_misses, 6.1 does not count it at
 * all. A daemon draining hash maps with syscalls during a storm therefore
 * loses failures. So every number user space reads lives in BPF_F_MMAPABLE
 * arrays (Linux 5.5+) that peripety/tracepoints/aggregates.py maps into its
 * memory; the hash maps below (slot_index, bucket_index, budget) are only
 * ever touched by the probes. In steady state user space makes no bpf()
 * syscall at all: reading the ring buffer is mmapped memory and epoll too.
 * The only bpf() syscalls left are bcc's when it creates the maps and loads
 * and attaches the programs at start, and closing them at stop (plus the
 * BPF_ENABLE_STATS of tests and benchmarks). The atomics used here (fetch
 * and add with its result, atomic OR) need Linux 5.12+.
 *
 * Epochs. ctl.epoch, written by user space only, numbers the generations;
 * probes write generation epoch & 1 of each two-generation array. User
 * space retires an epoch by incrementing ctl.epoch, waits at least one tick
 * (a probe reads the epoch once, then runs to its end with preemption
 * disabled, for microseconds: an epoch retired a tick ago has no writer
 * left), then reads its generation. Nothing is read while it can change,
 * nothing read twice, and user space never clears a count (see Values), so
 * no store of user space can race an increment.
 *
 * Slots. slot_index maps (key, epoch) -> a slot of the epoch's generation.
 * A probe finding none claims the next slot number of the epoch with an
 * atomic add on ctl.slots_claimed[epoch % 4], writes the key and epoch into
 * slot_keys[gen][slot], then inserts (key, epoch) -> slot with BPF_NOEXIST;
 * when another CPU inserted the key first, it counts in that slot and its
 * own stays without values. User space learns the keys from slot_keys.
 * Beyond PRPT_AGG_ENTRIES slots per epoch a failure is counted per kind
 * only (agg_full: exact total, no unit). The epoch is part of the hash key,
 * so an epoch's entries are never found again after it: they are the ones
 * the LRU evicts first, which keeps the index bounded. An entry evicted
 * within its epoch only makes its key claim a second slot, which user space
 * adds to the first.
 *
 * Claim counters. Four, by epoch % 4: user space resets the counter of the
 * epoch after next while retiring an epoch, so a counter is zeroed a whole
 * tick before its epoch starts, and long after its previous epoch ended.
 *
 * Values. slot_vals[gen][cpu][slot]: one writer each (a probe runs with
 * preemption disabled, and the kernel never runs a tracepoint program on a
 * CPU where one is running), so no atomics on the hot path. Each value
 * carries the epoch it counts for; a probe finding an older epoch there
 * resets it first. User space reads the values of its epoch only.
 *
 * Sectors. bucket_index maps (epoch, PRPT_BUCKET_SECTORS-sector bucket,
 * slot) -> a bucket slot, claimed like the slots (ctl.buckets_claimed);
 * the claimer zeroes the bucket's bits before inserting it, so no other
 * CPU can know the bucket slot before its bits are clear. bucket_bits[gen]
 * [bucket slot] holds one bit per 512-byte sector, set with atomic OR
 * (shared: a per-CPU bitmap would cost its size times the CPUs). Beyond
 * PRPT_SECTOR_ENTRIES buckets per epoch, or for a request spanning more
 * than two buckets, the request is counted in its value's `unmapped` (its
 * sectors are then known only to lie within [min_sector, max_sector_end));
 * sectors never affect the count.
 *
 * cpu_counters[cpu][counter][kind]: lost and sampled_out samples and
 * agg_full failures, only ever incremented; user space reports the
 * increase since it last read them. A row of kinds is PRPT_KINDS_PER_ROW
 * (a multiple of eight) long, so CPUs do not share cache lines.
 */

struct prpt_agg_key {
	u32 kind;
	s32 status;	/* block/xfs: -errno; SCSI: result (rtn); NVMe: status */
	u32 op;		/* block: op letters of rwbs; SCSI: opcode; else 0 */
	u32 dev;	/* kernel dev_t (block, ext4, xfs) */
	u32 host_no;	/* SCSI h:c:t:l; NVMe: host_no = ctrl_id */
	u32 channel;
	u32 id;
	u32 lun;
	char disk[32];	/* NVMe disk name */
};

struct prpt_agg_val {
	u64 count;
	u64 first_ns;
	u64 last_ns;
	u64 min_sector;
	u64 max_sector_end;	/* exclusive */
	u64 unmapped;		/* requests whose sectors have no bits */
	u64 epoch;		/* the epoch these values count for */
};

/* slot_keys' entries, and the keys of slot_index. */
struct prpt_slot {
	struct prpt_agg_key key;
	u64 epoch;
};

/* bucket_keys' entries, and the keys of bucket_index. */
struct prpt_bucket {
	u64 epoch;
	u64 bucket;		/* sector / PRPT_BUCKET_SECTORS */
	u32 slot;		/* the slot its failures are counted in */
	u32 _pad;
};

struct prpt_ctl {
	u64 epoch;		/* written by user space only */
	u64 _pad[7];		/* the claim counters on their own cache line */
	u64 slots_claimed[4];	/* per epoch % 4 */
	u64 buckets_claimed[4];
};

#define PRPT_BUCKET_SECTORS (PRPT_BUCKET_WORDS * 64)
_Static_assert((PRPT_BUCKET_WORDS & (PRPT_BUCKET_WORDS - 1)) == 0, "PRPT_BUCKET_WORDS must be a power of two");

struct prpt_sector_bits {
	u64 w[PRPT_BUCKET_WORDS];
};

/* The size of each is checked against kinds.toml like the samples'. */
_Static_assert(sizeof(struct prpt_agg_key) == PRPT_SIZEOF_AGG_KEY, "agg key layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_agg_val) == PRPT_SIZEOF_AGG_VAL, "agg value layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_slot) == PRPT_SIZEOF_SLOT, "slot layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_bucket) == PRPT_SIZEOF_BUCKET, "bucket layout differs from kinds.toml");
_Static_assert(sizeof(struct prpt_ctl) == PRPT_SIZEOF_CTL, "ctl layout differs from kinds.toml");
_Static_assert(PRPT_KINDS_PER_ROW >= PRPT_KIND_COUNT, "a row of cpu_counters holds every kind");

#define PRPT_NO_SLOT (~0U)
/* Room for the entries of the live epoch, the previous one and the LRU's
 * per-CPU free lists. */
#define PRPT_SLOT_INDEX_ENTRIES (4 * PRPT_AGG_ENTRIES)
#define PRPT_BUCKET_INDEX_ENTRIES (4 * PRPT_SECTOR_ENTRIES)

BPF_F_TABLE("array", u32, struct prpt_ctl, ctl, 1, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct prpt_slot, slot_keys, 2 * PRPT_AGG_ENTRIES, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct prpt_agg_val, slot_vals, 2 * PRPT_NR_CPUS * PRPT_AGG_ENTRIES, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct prpt_bucket, bucket_keys, 2 * PRPT_SECTOR_ENTRIES, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct prpt_sector_bits, bucket_bits, 2 * PRPT_SECTOR_ENTRIES, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, u64, cpu_counters, PRPT_NR_CPUS * PRPT_COUNTERS * PRPT_KINDS_PER_ROW, BPF_F_MMAPABLE);
BPF_TABLE("lru_hash", struct prpt_slot, u32, slot_index, PRPT_SLOT_INDEX_ENTRIES);
BPF_TABLE("lru_hash", struct prpt_bucket, u32, bucket_index, PRPT_BUCKET_INDEX_ENTRIES);

struct prpt_budget {
	u64 interval_start_ns;
	u64 sent;
};
/* Per unit (kind and unit of the key; status and op zeroed). LRU: units
 * that stopped failing make room for new ones. */
BPF_TABLE("lru_hash", struct prpt_agg_key, struct prpt_budget, budget, PRPT_BUDGET_ENTRIES);

/* One more of `counter` (PRPT_COUNTER_*) for `kind` on this CPU. */
static __always_inline void count_cpu(u32 counter, u32 kind)
{
	u32 idx = (bpf_get_smp_processor_id() * PRPT_COUNTERS + counter) * PRPT_KINDS_PER_ROW + kind;
	u64 *n = cpu_counters.lookup(&idx);

	if (n && kind < PRPT_KINDS_PER_ROW)
		(*n)++;
}

/*
 * Take the next of PRPT_AGG_ENTRIES / PRPT_SECTOR_ENTRIES numbers of an
 * epoch; -1 when they are all taken (checked first, so a full epoch costs
 * no atomic per failure).
 */
static __always_inline s64 claim(u64 *counter, u64 limit)
{
	u64 n;

	if (*(volatile u64 *)counter >= limit)
		return -1;
	n = __sync_fetch_and_add(counter, 1);
	return n < limit ? (s64)n : -1;
}

/* The slot of `key` in `epoch`, claimed when it has none (see above). */
static __always_inline u32 find_slot(struct prpt_ctl *c, u64 epoch, struct prpt_agg_key *key)
{
	struct prpt_slot want;
	struct prpt_slot *entry;
	u32 *found, slot, idx;
	s64 claimed;

	__builtin_memcpy(&want.key, key, sizeof(want.key));
	want.epoch = epoch;
	found = slot_index.lookup(&want);
	if (found)
		return *found;
	claimed = claim(&c->slots_claimed[epoch & 3], PRPT_AGG_ENTRIES);
	if (claimed < 0)
		return PRPT_NO_SLOT;
	slot = claimed;
	idx = (epoch & 1) * PRPT_AGG_ENTRIES + slot;
	entry = slot_keys.lookup(&idx);
	if (!entry)
		return PRPT_NO_SLOT;
	__builtin_memcpy(entry, &want, sizeof(want));
	if (slot_index.insert(&want, &slot) != 0) {
		/* Another CPU inserted this key first: count in its slot. (Had the
		 * insert failed otherwise, ours is as good.) */
		found = slot_index.lookup(&want);
		if (found)
			return *found;
	}
	return slot;
}

/* This CPU's value of `slot` in `epoch`, reset when it held an older one. */
static __always_inline struct prpt_agg_val *slot_value(u64 epoch, u32 slot)
{
	u32 idx = ((u32)(epoch & 1) * PRPT_NR_CPUS + bpf_get_smp_processor_id()) * PRPT_AGG_ENTRIES + slot;
	struct prpt_agg_val *val;

	if (slot >= PRPT_AGG_ENTRIES)
		return 0;
	val = slot_vals.lookup(&idx);
	if (val && val->epoch != epoch) {
		__builtin_memset(val, 0, sizeof(*val));
		val->epoch = epoch;
	}
	return val;
}

/* The bits of `bucket` for `slot` in `epoch`, claimed when it has none;
 * NULL when the epoch's buckets are all taken. */
static __always_inline struct prpt_sector_bits *bucket_bits_of(struct prpt_ctl *c, u64 epoch, u32 slot, u64 bucket)
{
	struct prpt_bucket want = {};
	struct prpt_bucket *entry;
	struct prpt_sector_bits *bits;
	u32 *found, bslot, idx;
	s64 claimed;

	want.epoch = epoch;
	want.bucket = bucket;
	want.slot = slot;
	found = bucket_index.lookup(&want);
	if (found) {
		idx = (epoch & 1) * PRPT_SECTOR_ENTRIES + *found;
		return bucket_bits.lookup(&idx);
	}
	claimed = claim(&c->buckets_claimed[epoch & 3], PRPT_SECTOR_ENTRIES);
	if (claimed < 0)
		return 0;
	bslot = claimed;
	idx = (epoch & 1) * PRPT_SECTOR_ENTRIES + bslot;
	entry = bucket_keys.lookup(&idx);
	bits = bucket_bits.lookup(&idx);
	if (!entry || !bits)
		return 0;
	/* Unknown to every other CPU until inserted: clear it first. */
	__builtin_memset(bits, 0, sizeof(*bits));
	__builtin_memcpy(entry, &want, sizeof(want));
	if (bucket_index.insert(&want, &bslot) != 0) {
		found = bucket_index.lookup(&want);
		if (found) {
			idx = (epoch & 1) * PRPT_SECTOR_ENTRIES + *found;
			return bucket_bits.lookup(&idx);
		}
	}
	return bits;
}

/*
 * Set the bits of sectors [first, end) that fall into `bucket`. At most
 * PRPT_BUCKET_WORDS words; a word already holding its bits is not written,
 * so a storm on the same sectors does not bounce a shared cache line.
 */
static __always_inline int mark_bucket(struct prpt_ctl *c, u64 epoch, u32 slot, u64 bucket, u64 first, u64 end)
{
	u64 base = bucket * PRPT_BUCKET_SECTORS;
	u64 lo = first > base ? first - base : 0;
	u64 hi = end - base < PRPT_BUCKET_SECTORS ? end - base : PRPT_BUCKET_SECTORS;
	struct prpt_sector_bits *bits = bucket_bits_of(c, epoch, slot, bucket);
	u32 i, n;

	if (!bits)
		return -1;
	/* Words first..last; the index is masked so the verifier sees it
	 * inside the bitmap whatever the compiler makes of the loop. */
	for (n = 0; n < PRPT_BUCKET_WORDS; n++) {
		u64 w = lo / 64 + n;
		u64 word_lo = w * 64, word_hi = word_lo + 64;
		u64 from, to, mask;

		if (word_lo >= hi)
			break;
		from = lo > word_lo ? lo - word_lo : 0;		/* first bit */
		to = hi < word_hi ? hi - word_lo : 64;		/* past the last bit */
		mask = (to - from >= 64) ? ~0ULL : (((1ULL << (to - from)) - 1) << from);
		i = w & (PRPT_BUCKET_WORDS - 1);
		if ((bits->w[i] & mask) != mask)
			__sync_fetch_and_or(&bits->w[i], mask);
	}
	return 0;
}

/* Record the failed sectors [sector, end) of one request. */
static __always_inline int mark_sectors(struct prpt_ctl *c, u64 epoch, u32 slot, u64 sector, u64 end)
{
	u64 first_bucket = sector / PRPT_BUCKET_SECTORS;
	u64 last_bucket = (end - 1) / PRPT_BUCKET_SECTORS;

	if (last_bucket - first_bucket > 1)
		return -1;
	if (mark_bucket(c, epoch, slot, first_bucket, sector, end))
		return -1;
	if (last_bucket != first_bucket && mark_bucket(c, epoch, slot, last_bucket, sector, end))
		return -1;
	return 0;
}

#define PRPT_NO_SECTOR (~0ULL)

/* Count one failure of `key`; `sector` PRPT_NO_SECTOR when it has none. */
static __always_inline void count_failure(struct prpt_agg_key *key, u64 sector, u32 nr_sector, u64 now)
{
	u32 zero = 0;
	struct prpt_ctl *c = ctl.lookup(&zero);
	struct prpt_agg_val *val = 0;
	u64 epoch, end;
	u32 slot = PRPT_NO_SLOT;

	if (c) {
		/* Read once: everything below counts in this epoch. */
		epoch = *(volatile u64 *)&c->epoch;
		slot = find_slot(c, epoch, key);
		val = slot_value(epoch, slot);
	}
	if (!val) {
		count_cpu(PRPT_COUNTER_AGG_FULL, key->kind);
		return;
	}
	/* This CPU's value: no other writer while the probe runs. */
	if (val->count == 0) {
		val->first_ns = now;
		val->min_sector = PRPT_NO_SECTOR;
	}
	val->count++;
	val->last_ns = now;
	if (sector == PRPT_NO_SECTOR)
		return;
	end = sector + (nr_sector ? nr_sector : 1);
	if (sector < val->min_sector)
		val->min_sector = sector;
	if (end > val->max_sector_end)
		val->max_sector_end = end;
	if (mark_sectors(c, epoch, slot, sector, end))
		val->unmapped++;
}

/*
 * Whether this failure also goes out as a full sample: the first
 * PRPT_SAMPLE_BUDGET of its unit in each PRPT_SAMPLE_INTERVAL_NS. Two CPUs
 * opening a new interval at once may let a sample or two more through.
 */
static __always_inline int sample_wanted(struct prpt_agg_key *key, u64 now)
{
	struct prpt_agg_key unit;
	struct prpt_budget zero = {}, *b;

	__builtin_memcpy(&unit, key, sizeof(unit));
	unit.status = 0;
	unit.op = 0;
	b = budget.lookup_or_try_init(&unit, &zero);
	if (!b)
		return 1;
	if (now - b->interval_start_ns >= PRPT_SAMPLE_INTERVAL_NS) {
		b->interval_start_ns = now;
		b->sent = 0;
	}
	if (b->sent >= PRPT_SAMPLE_BUDGET) {
		count_cpu(PRPT_COUNTER_SAMPLED_OUT, key->kind);
		return 0;
	}
	__sync_fetch_and_add(&b->sent, 1);
	return 1;
}

/* Count the failure, then say whether to send its sample. */
static __always_inline int account(struct prpt_agg_key *key, u64 sector, u32 nr_sector, u64 now)
{
	count_failure(key, sector, nr_sector, now);
	return sample_wanted(key, now);
}

/*
 * Reserve a sample of `size` bytes, zeroed (no stale ring memory reaches
 * user space) with its head filled in; NULL, counted as lost for `kind`,
 * when the ring buffer is full. Probes fill the rest and submit.
 */
static __always_inline void *reserve_sample(u32 size, u32 kind, u32 dev, u64 now)
{
	struct prpt_head *head = events.ringbuf_reserve(size);

	if (!head) {
		count_cpu(PRPT_COUNTER_LOST, kind);
		return 0;
	}
	__builtin_memset(head, 0, size);
	head->kind = kind;
	head->dev = dev;
	head->ktime_ns = now;
	return head;
}

static __always_inline void agg_key_init(struct prpt_agg_key *key, u32 kind, s32 status, u32 op, u32 dev)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->kind = kind;
	key->status = status;
	key->op = op;
	key->dev = dev;
}

/* ---- block ------------------------------------------------------------ */

#if defined(PRPT_BLOCK_RQ_ERROR) || defined(PRPT_BLOCK_RQ_COMPLETE)
/*
 * The operation of an rwbs string as up to two letters (low byte first):
 * "R", "W", "D", "DE" (secure erase), "F" (flush), "N"; a leading F that is
 * REQ_PREFLUSH before another op letter is skipped, and the flag letters
 * after the op (S, M, A, F for FUA) are not part of it, so one op is one key.
 */
static __always_inline u32 rwbs_op_code(const char *rwbs)
{
	char c0 = rwbs[0], c1 = rwbs[1], c2 = rwbs[2];

	if (c0 == 'F' && (c1 == 'R' || c1 == 'W' || c1 == 'D' || c1 == 'F' || c1 == 'N')) {
		c0 = c1;
		c1 = c2;
	}
	if (c0 == 'D' && c1 == 'E')
		return 'D' | ('E' << 8);
	return (u8)c0;
}

static __always_inline int on_block(u32 dev, u64 sector, u32 nr_sector, s32 error,
				    const char *rwbs_arg, u32 rwbs_size, u32 from_complete)
{
	struct prpt_agg_key key;
	struct prpt_block_event *ev;
	char rwbs[16] = {};
	u64 now = bpf_ktime_get_ns();

	bpf_probe_read_kernel(rwbs, rwbs_size < sizeof(rwbs) ? rwbs_size : sizeof(rwbs) - 1, rwbs_arg);
	agg_key_init(&key, PRPT_KIND_BLOCK_RQ_ERROR, error, rwbs_op_code(rwbs), dev);
	/* A request without sectors (a flush) names no sector to record. */
	if (!account(&key, nr_sector ? sector : PRPT_NO_SECTOR, nr_sector, now))
		return 0;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_BLOCK_RQ_ERROR, dev, now);
	if (!ev)
		return 0;
	ev->sector = sector;
	ev->nr_sector = nr_sector;
	ev->error = error;
	__builtin_memcpy(ev->rwbs, rwbs, sizeof(ev->rwbs));
	ev->from_complete = from_complete;
	events.ringbuf_submit(ev, 0);
	return 0;
}
#endif

/*
 * What every TRACEPOINT_PROBE below returns, whatever it did. A tracepoint
 * program's return value also decides whether perf events on the same
 * tracepoint get the hit (perf_trace_run_bpf_submit, kernel/events/core.c:
 * 0 drops it), so returning 0 would hide these tracepoints from anyone's
 * `perf stat/record/trace` while peripetyd runs -- every SCSI and NVMe
 * completion included. 1 leaves perf users what they would see without us.
 */
#define PRPT_PERF_KEEP 1

#ifdef PRPT_BLOCK_RQ_ERROR
/* Fires only for failed requests (5.18+), under the same condition as the
 * kernel's "I/O error, dev ..." line, but never rate limited. */
TRACEPOINT_PROBE(block, block_rq_error)
{
	on_block(args->dev, args->sector, args->nr_sector, args->error,
		 args->rwbs, sizeof(args->rwbs), 0);
	return PRPT_PERF_KEEP;
}
#elif defined(PRPT_BLOCK_RQ_COMPLETE)
/* Older kernels: every completion passes here; keep failures only. */
TRACEPOINT_PROBE(block, block_rq_complete)
{
	if (args->error == 0)
		return PRPT_PERF_KEEP;
	on_block(args->dev, args->sector, args->nr_sector, args->error,
		 args->rwbs, sizeof(args->rwbs), 1);
	return PRPT_PERF_KEEP;
}
#endif

/* ---- SCSI ------------------------------------------------------------- */

/* The aggregation key of a SCSI command: its target and LUN, opcode, and
 * the result (rtn for scsi_dispatch_cmd_error). No sector: the LBA lives in
 * the CDB, decoded from the samples. */
#define PRPT_SCSI_KEY(key, kind, status)					\
	do {									\
		agg_key_init(&(key), (kind), (status), args->opcode, 0);	\
		(key).host_no = args->host_no;					\
		(key).channel = args->channel;					\
		(key).id = args->id;						\
		(key).lun = args->lun;						\
	} while (0)

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
	struct prpt_agg_key key;
	struct prpt_scsi_event *ev;
	u64 now = bpf_ktime_get_ns();

	PRPT_SCSI_KEY(key, PRPT_KIND_SCSI_CMD_ERROR, args->rtn);
	if (!account(&key, PRPT_NO_SECTOR, 0, now))
		return PRPT_PERF_KEEP;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_SCSI_CMD_ERROR, 0, now);
	if (!ev)
		return PRPT_PERF_KEEP;
	PRPT_FILL_SCSI_CMD(ev, args->rtn);
	events.ringbuf_submit(ev, 0);
	return PRPT_PERF_KEEP;
}
#endif

#ifdef PRPT_SCSI_DISPATCH_CMD_TIMEOUT
TRACEPOINT_PROBE(scsi, scsi_dispatch_cmd_timeout)
{
	struct prpt_agg_key key;
	struct prpt_scsi_event *ev;
	u64 now = bpf_ktime_get_ns();

	PRPT_SCSI_KEY(key, PRPT_KIND_SCSI_CMD_TIMEOUT, args->result);
	if (!account(&key, PRPT_NO_SECTOR, 0, now))
		return PRPT_PERF_KEEP;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_SCSI_CMD_TIMEOUT, 0, now);
	if (!ev)
		return PRPT_PERF_KEEP;
	PRPT_FILL_SCSI_CMD(ev, args->result);
#ifdef PRPT_SCSI_DISPATCH_CMD_TIMEOUT_SENSE
	PRPT_FILL_SCSI_SENSE(ev);
#endif
	events.ringbuf_submit(ev, 0);
	return PRPT_PERF_KEEP;
}
#endif

#ifdef PRPT_SCSI_DISPATCH_CMD_DONE
/* Every SCSI completion passes here: reject success before anything else. */
TRACEPOINT_PROBE(scsi, scsi_dispatch_cmd_done)
{
	struct prpt_agg_key key;
	struct prpt_scsi_event *ev;
	u64 now;

	if (args->result == 0)
		return PRPT_PERF_KEEP;
	now = bpf_ktime_get_ns();
	PRPT_SCSI_KEY(key, PRPT_KIND_SCSI_CMD_DONE, args->result);
	if (!account(&key, PRPT_NO_SECTOR, 0, now))
		return PRPT_PERF_KEEP;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_SCSI_CMD_DONE, 0, now);
	if (!ev)
		return PRPT_PERF_KEEP;
	PRPT_FILL_SCSI_CMD(ev, args->result);
#ifdef PRPT_SCSI_DISPATCH_CMD_DONE_SENSE
	PRPT_FILL_SCSI_SENSE(ev);
#endif
	events.ringbuf_submit(ev, 0);
	return PRPT_PERF_KEEP;
}
#endif

#ifdef PRPT_SCSI_EH_WAKEUP
TRACEPOINT_PROBE(scsi, scsi_eh_wakeup)
{
	struct prpt_agg_key key;
	struct prpt_scsi_event *ev;
	u64 now = bpf_ktime_get_ns();

	agg_key_init(&key, PRPT_KIND_SCSI_EH_WAKEUP, 0, 0, 0);
	key.host_no = args->host_no;
	if (!account(&key, PRPT_NO_SECTOR, 0, now))
		return PRPT_PERF_KEEP;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_SCSI_EH_WAKEUP, 0, now);
	if (!ev)
		return PRPT_PERF_KEEP;
	ev->host_no = args->host_no;
	events.ringbuf_submit(ev, 0);
	return PRPT_PERF_KEEP;
}
#endif

/* ---- NVMe ------------------------------------------------------------- */

#ifdef PRPT_NVME_COMPLETE_RQ
/* Every NVMe completion passes here: reject success before anything else.
 * The key is the disk name and controller (the event carries no dev_t) and
 * the status; qid and cid change with every request and stay out of it. */
TRACEPOINT_PROBE(nvme, nvme_complete_rq)
{
	struct prpt_agg_key key;
	struct prpt_nvme_event *ev;
	u64 now;

	if (args->status == 0)
		return PRPT_PERF_KEEP;
	now = bpf_ktime_get_ns();
	agg_key_init(&key, PRPT_KIND_NVME_COMPLETE_RQ, args->status, 0, 0);
	key.host_no = args->ctrl_id;
	bpf_probe_read_kernel(key.disk, sizeof(key.disk) - 1, args->disk);
	if (!account(&key, PRPT_NO_SECTOR, 0, now))
		return PRPT_PERF_KEEP;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_NVME_COMPLETE_RQ, 0, now);
	if (!ev)
		return PRPT_PERF_KEEP;
	__builtin_memcpy(ev->disk, key.disk, sizeof(ev->disk));
	ev->ctrl_id = args->ctrl_id;
	ev->qid = args->qid;
	ev->cid = args->cid;
	ev->status = args->status;
	ev->retries = args->retries;
	ev->flags = args->flags;
	ev->result = args->result;
	events.ringbuf_submit(ev, 0);
	return PRPT_PERF_KEEP;
}
#endif

/* ---- file systems ----------------------------------------------------- */

#ifdef PRPT_EXT4_ERROR
/* Key: the device and the reporting line (op); no sector. */
TRACEPOINT_PROBE(ext4, ext4_error)
{
	struct prpt_agg_key key;
	struct prpt_ext4_event *ev;
	u64 now = bpf_ktime_get_ns();

	agg_key_init(&key, PRPT_KIND_EXT4_ERROR, 0, args->line, args->dev);
	if (!account(&key, PRPT_NO_SECTOR, 0, now))
		return PRPT_PERF_KEEP;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_EXT4_ERROR, args->dev, now);
	if (!ev)
		return PRPT_PERF_KEEP;
	ev->line = args->line;
	/* `function` points at a string constant inside the kernel image. */
	bpf_probe_read_kernel_str(ev->function, sizeof(ev->function), (const void *)args->function);
	events.ringbuf_submit(ev, 0);
	return PRPT_PERF_KEEP;
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
	struct prpt_agg_key key;
	struct prpt_xfs_event *ev;
	u64 now;

	if (args->error == 0)
		return PRPT_PERF_KEEP;
	now = bpf_ktime_get_ns();
	/* bno/length are 512-byte basic blocks: sectors. */
	agg_key_init(&key, PRPT_KIND_XFS_BUF_IOERROR, args->error, 0, args->dev);
	if (!account(&key, args->bno, args->length, now))
		return PRPT_PERF_KEEP;
	ev = reserve_sample(sizeof(*ev), PRPT_KIND_XFS_BUF_IOERROR, args->dev, now);
	if (!ev)
		return PRPT_PERF_KEEP;
	ev->bno = args->bno;
	ev->length = args->length;
	ev->flags = args->flags;
	ev->error = args->error;
	ev->caller_ip = (u64)args->caller_ip;
	events.ringbuf_submit(ev, 0);
	return PRPT_PERF_KEEP;
}
#endif
