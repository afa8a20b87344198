"""Everything a step touches: the pool, its workers, shared memory, emulators, preprocessing."""
