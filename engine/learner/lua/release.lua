-- Give up the learner lease, only if still held by the caller.
-- KEYS[1]  the lease key;  ARGV[1]  the holder's value (token:generation)
-- Returns 1 when released, 0 when it was not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
