-- Claim a partition's model bank: a new owner generation, and the checkpoint saved so far.
-- KEYS[1]  the partition's model hash (fields: gen, blob)
-- Returns {generation, blob or false}.
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
local blob = redis.call('HGET', KEYS[1], 'blob')
return {gen, blob}
