-- Save a partition's checkpoint only if the saver still owns the partition's latest generation.
-- KEYS[1]  the partition's model hash
-- ARGV[1]  the generation the saver claimed;  ARGV[2]  the checkpoint blob
-- Returns 1 when saved, 0 when a newer owner claimed the partition since (the save is refused).
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'blob', ARGV[2])
return 1
