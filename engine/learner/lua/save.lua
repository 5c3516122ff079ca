-- Save the learner checkpoint, only while the saver still holds the lease.
-- KEYS[1]  the lease key;  KEYS[2]  the checkpoint key
-- ARGV[1]  the saver's lease value (token:generation);  ARGV[2]  the checkpoint blob
-- Returns 1 when saved, 0 when the lease expired or another learner holds it (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
