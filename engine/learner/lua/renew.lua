-- Extend the learner lease, only for the holder.
-- KEYS[1]  the lease key;  ARGV[1]  the holder's value (token:generation);  ARGV[2]  ttl in ms
-- Returns 1 when renewed, 0 when the lease is gone or held by another learner.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
