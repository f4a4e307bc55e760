/*
 * The reference for bench/core_filter.py: the 3.6 kernel's full-scan loop of
 * __ftrace_hash_rec_update() (kernel/trace/ftrace.c), with the kernel's hash
 * (struct ftrace_hash: hlist buckets indexed by hash_long(ip, size_bits),
 * sized by ftrace_hash_move() to about half the entry count, at most 2^12
 * buckets), over the model's own records: struct dyn_ftrace { ip; flags }, the
 * layout of the shared-memory record pages, passed in by ctypes.
 *
 * Built by the benchmark at run time: gcc -O2 -shared -fPIC.
 */
#include <stdint.h>
#include <stdlib.h>

#define FTRACE_FL_ENABLED (1UL << 30)
#define FTRACE_FL_MASK (0x3UL << 30)
#define FTRACE_REF_MAX ((1UL << 30) - 1)
#define FTRACE_HASH_DEFAULT_BITS 10
#define FTRACE_HASH_MAX_BITS 12
/* include/linux/hash.h, 64-bit */
#define GOLDEN_RATIO_PRIME_64 0x9e37fffffffc0001UL

struct dyn_ftrace {
	uint64_t ip;
	uint64_t flags;
};

struct ftrace_func_entry {
	struct ftrace_func_entry *next; /* hlist_node */
	uint64_t ip;
};

struct ftrace_hash {
	unsigned long size_bits;
	struct ftrace_func_entry **buckets;
	unsigned long count;
};

static inline uint64_t hash_64(uint64_t val, unsigned int bits)
{
	return (val * GOLDEN_RATIO_PRIME_64) >> (64 - bits);
}

static inline int ftrace_hash_empty(const struct ftrace_hash *hash)
{
	return !hash || !hash->count;
}

static struct ftrace_func_entry *ftrace_lookup_ip(const struct ftrace_hash *hash, uint64_t ip)
{
	struct ftrace_func_entry *entry;
	unsigned long key;

	if (ftrace_hash_empty(hash))
		return NULL;
	key = hash->size_bits > 0 ? hash_64(ip, hash->size_bits) : 0;
	for (entry = hash->buckets[key]; entry; entry = entry->next)
		if (entry->ip == ip)
			return entry;
	return NULL;
}

static void __add_hash_entry(struct ftrace_hash *hash, struct ftrace_func_entry *entry)
{
	unsigned long key = hash->size_bits > 0 ? hash_64(entry->ip, hash->size_bits) : 0;

	entry->next = hash->buckets[key];
	hash->buckets[key] = entry;
	hash->count++;
}

static struct ftrace_hash *alloc_ftrace_hash(int size_bits)
{
	struct ftrace_hash *hash = calloc(1, sizeof(*hash));

	if (!hash)
		return NULL;
	hash->buckets = calloc(1UL << size_bits, sizeof(*hash->buckets));
	if (!hash->buckets) {
		free(hash);
		return NULL;
	}
	hash->size_bits = size_bits;
	return hash;
}

void free_ftrace_hash(struct ftrace_hash *hash)
{
	unsigned long i;
	struct ftrace_func_entry *entry, *next;

	if (!hash)
		return;
	for (i = 0; i < (1UL << hash->size_bits); i++)
		for (entry = hash->buckets[i]; entry; entry = next) {
			next = entry->next;
			free(entry);
		}
	free(hash->buckets);
	free(hash);
}

/* A hash of `n` entries sized as ftrace_hash_move() sizes the hash it installs. */
struct ftrace_hash *ftrace_hash_from_ips(const uint64_t *ips, unsigned long n)
{
	int bits = 0;
	unsigned long size, i;
	struct ftrace_hash *hash;

	for (size = n / 2; size; size >>= 1)
		bits++;
	if (bits > FTRACE_HASH_MAX_BITS)
		bits = FTRACE_HASH_MAX_BITS;
	hash = alloc_ftrace_hash(bits);
	if (!hash)
		return NULL;
	for (i = 0; i < n; i++) {
		struct ftrace_func_entry *entry = malloc(sizeof(*entry));

		if (!entry) {
			free_ftrace_hash(hash);
			return NULL;
		}
		entry->ip = ips[i];
		__add_hash_entry(hash, entry);
	}
	return hash;
}

/*
 * __ftrace_hash_rec_update(ops, filter_hash, inc), 3.6.5, over one record array.
 * Returns 0, or the WARN's kind (1 overflow, 2 underflow) where the kernel WARNs
 * and returns.
 */
int ftrace_hash_rec_update(struct dyn_ftrace *recs, unsigned long nr,
			   struct ftrace_hash *filter_hash_p, struct ftrace_hash *notrace_hash_p,
			   int filter_hash, int inc)
{
	struct ftrace_hash *hash, *other_hash;
	struct dyn_ftrace *rec;
	unsigned long i;
	int count = 0;
	int all = 0;

	if (filter_hash) {
		hash = filter_hash_p;
		other_hash = notrace_hash_p;
		if (ftrace_hash_empty(hash))
			all = 1;
	} else {
		inc = !inc;
		hash = notrace_hash_p;
		other_hash = filter_hash_p;
		if (ftrace_hash_empty(hash))
			return 0;
	}

	for (i = 0; i < nr; i++) {
		int in_other_hash = 0;
		int in_hash = 0;
		int match = 0;

		rec = &recs[i];
		if (all) {
			if (!other_hash || !ftrace_lookup_ip(other_hash, rec->ip))
				match = 1;
		} else {
			in_hash = !!ftrace_lookup_ip(hash, rec->ip);
			in_other_hash = !!ftrace_lookup_ip(other_hash, rec->ip);
			if (filter_hash && in_hash && !in_other_hash)
				match = 1;
			else if (!filter_hash && in_hash &&
				 (in_other_hash || ftrace_hash_empty(other_hash)))
				match = 1;
		}
		if (!match)
			continue;

		if (inc) {
			rec->flags++;
			if ((rec->flags & ~FTRACE_FL_MASK) == FTRACE_REF_MAX)
				return 1;
		} else {
			if ((rec->flags & ~FTRACE_FL_MASK) == 0)
				return 2;
			rec->flags--;
		}
		count++;
		/* Shortcut, if we handled all records, we are done. */
		if (!all && count == hash->count)
			return 0;
	}
	return 0;
}

/*
 * ftrace_hash_move(ops, enable = 1, &ops->filter_hash, src): the disable pass with
 * the old filter, the new hash built from `src` (as ftrace_hash_move moves the
 * entries into a hash sized for them; an empty source installs EMPTY_HASH), the old
 * one freed, and the enable pass.  Returns the first WARN's kind, or 0.
 */
int ftrace_hash_move_filter(struct dyn_ftrace *recs, unsigned long nr,
			    struct ftrace_hash **filter, struct ftrace_hash *notrace,
			    const uint64_t *src, unsigned long src_n)
{
	struct ftrace_hash *new_hash = NULL;
	int warn, warn2;

	warn = ftrace_hash_rec_update(recs, nr, *filter, notrace, 1, 0);
	if (src_n) {
		new_hash = ftrace_hash_from_ips(src, src_n);
		if (!new_hash)
			return -1;
	}
	free_ftrace_hash(*filter);
	*filter = new_hash;
	warn2 = ftrace_hash_rec_update(recs, nr, *filter, notrace, 1, 1);
	return warn ? warn : warn2;
}
