-- Raise partitions' label frontiers; a frontier never moves back (a former owner's late write
-- of an older value is ignored).
-- KEYS[1]  the frontier hash (field: source partition -> event time)
-- ARGV     partition, value, partition, value, ... (values as decimal or "inf")
-- Returns how many fields were raised.
local function num(text)
  if text == 'inf' then return math.huge end
  return tonumber(text)
end
local raised = 0
for i = 1, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if not old or num(ARGV[i + 1]) > num(old) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    raised = raised + 1
  end
end
return raised
