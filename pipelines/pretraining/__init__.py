"""The pretraining data job's parts; `python -m pipelines.pretraining_data` runs them.

One document, from a documents shard to the examples it gives, in the order the job works:

1. **A documents row** (schemas/documents.py): its `doc_id` and its sentences, read from the
   extraction's shards. The job ranks every document by a hash of its id (`common.doc_hash`),
   so its place does not depend on the number of workers; consecutive ranks form a bucket, the
   unit of work.
2. **A `TokenizedDocument`** (`records.DocumentTokenizer`): its token ids, one array, and the
   boundaries of its sentences; sentences too long for the shortest length are cut
   (`pairs.split_long_sentences`).
3. **A `PlannedDocument`** (`records.DocumentPlanner`, `pairs.create_pair_plans`): for each
   sequence length and each of `dupe_factor` copies, its pairs as token spans. For a NotNext
   pair only B's document is chosen here: a random rank of another document, drawn from an rng
   seeded by (seed, length, doc id, copy) (`common.record_seed`). With `sentence_order`
   (ALBERT) every pair is planned as an IsNext pair, and a coin from the same rng marks it
   swapped. With `packing` (RoBERTa, `packing.py`) there are no pairs: a bucket's documents
   are packed into rows of whole sentences (`packing.plan_rows`), each row planned in the
   document it starts in; a `full-sentences` row runs on across the documents of a stream,
   a range of hashes fixed by the corpus, and a bucket holds whole streams.
4. **NotNext B segments** (`records.Answers`): the bucket asks the bucket that holds B's
   document for B's tokens. This is the one step that moves data between documents, and the
   only one the two exchanges do differently: `local_exchange.py` through files on this
   machine's disk, `shuffle_exchange.py` through Beam's shuffle (for Dataflow). Sentence-order
   and packed data have no NotNext pair, so nothing moves here.
5. **`ExampleColumns`** (`records.ExampleAssembler`): the pairs packed as
   `[CLS] A [SEP] B [SEP]`, or `[CLS] B [SEP] A [SEP]` when swapped (`pairs.pack_pair_groups`),
   or the packed rows as `[CLS] ... [SEP]` (`packing.pack_rows`), masked by the shared rule
   (bertdata/masking.py) unless the job writes for dynamic masking, as columns of consecutive
   ranks; each example's rank is its (document rank, copy, pair) order.
6. **A shard** (`records.write_example_shard`, schema schemas/pretraining.py): rank mod
   `num_shards` picks the shard, so shards differ by at most one example; inside a shard the
   rows are ordered by a random key from their rng, a shuffle fixed by the seed. Each length's
   manifest is written last (schemas/manifest.py).

The job's options are declared in pipelines/options.py (`PretrainingDataConfig`).
`allocator.py` keeps a long-running worker's memory flat (`BulkDataStep`, the base of the
steps that handle bulk data); `common.py` reads the vocabulary input and holds the seeds and
the errors every step shares.
"""
