-- Put one customer in one segment of a family (or in none), keeping the family's sizes and
-- revenue sums exact. Idempotent: running it again with the same arguments changes nothing, so
-- a redelivered or retried commit cannot skew the aggregates.
-- KEYS[1]      the family's sums hash (fields n:<segment>, rev:<segment>; revenue in minor units)
-- KEYS[2..]    the family's member sets, one per segment (sorted set: customer -> revenue)
-- ARGV[1]      customer id;  ARGV[2] index into KEYS[2..] of the target segment (0: none)
-- ARGV[3]      the customer's revenue (integer minor units)
-- ARGV[4..]    the segment names, in the order of KEYS[2..]
local customer = ARGV[1]
local target = tonumber(ARGV[2])
local revenue = tonumber(ARGV[3])
for i = 2, #KEYS do
  local index = i - 1
  local name = ARGV[3 + index]
  local score = redis.call('ZSCORE', KEYS[i], customer)
  if score then
    score = tonumber(score)
    if index ~= target then
      redis.call('ZREM', KEYS[i], customer)
      redis.call('HINCRBY', KEYS[1], 'n:' .. name, -1)
      redis.call('HINCRBY', KEYS[1], 'rev:' .. name, 0 - score)  -- (-0 is no integer to Redis)
    elseif score ~= revenue then
      redis.call('ZADD', KEYS[i], revenue, customer)
      redis.call('HINCRBY', KEYS[1], 'rev:' .. name, revenue - score)
    end
  elseif index == target then
    redis.call('ZADD', KEYS[i], revenue, customer)
    redis.call('HINCRBY', KEYS[1], 'n:' .. name, 1)
    redis.call('HINCRBY', KEYS[1], 'rev:' .. name, revenue)
  end
end
return 1
