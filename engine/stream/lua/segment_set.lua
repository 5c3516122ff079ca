-- Put a batch of customers in one segment of a family each (or in none), keeping the family's
-- sizes and revenue sums exact. Idempotent: where each customer is counted is kept in a hash
-- (customer -> "segment index:revenue"), so a retried or redelivered call changes nothing.
-- Every command is batched: one HMGET for the batch, then one command per touched field or set.
-- KEYS[1]      the family's sums hash (fields n:<segment>, rev:<segment>; revenue in minor units)
-- KEYS[2]      the family's placement hash (customer -> "<index>:<revenue>", index 0 = none)
-- KEYS[3..]    the family's member sets, one per segment (sorted set: customer -> revenue)
-- ARGV[1]      the number of segments S;  ARGV[2..S+1] the segment names, in the order of KEYS[3..]
-- ARGV[S+2..]  triples: customer id, target index into the member sets (0: none), revenue (minor units)
local segments = tonumber(ARGV[1])
local first = segments + 2
local customers = {}
for i = first, #ARGV, 3 do customers[#customers + 1] = ARGV[i] end
if #customers == 0 then return 0 end
local placed = redis.call('HMGET', KEYS[2], unpack(customers))
local deltas, adds, removes, placements, moved = {}, {}, {}, {}, 0
local function bump(field, by)
  deltas[field] = (deltas[field] or 0) + by
end
for n = 1, #customers do
  local base = first + (n - 1) * 3
  local customer, target, revenue = ARGV[base], tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local was, had = 0, 0
  if placed[n] then
    local colon = string.find(placed[n], ':', 1, true)
    was, had = tonumber(string.sub(placed[n], 1, colon - 1)), tonumber(string.sub(placed[n], colon + 1))
  end
  if (was ~= target or had ~= revenue) and not (was == 0 and target == 0) then
    moved = moved + 1
    if was ~= 0 then
      local name = ARGV[1 + was]
      bump('n:' .. name, -1)
      bump('rev:' .. name, -had)
      if was ~= target then
        removes[was] = removes[was] or {}
        table.insert(removes[was], customer)
      end
    end
    if target ~= 0 then
      local name = ARGV[1 + target]
      bump('n:' .. name, 1)
      bump('rev:' .. name, revenue)
      adds[target] = adds[target] or {}
      table.insert(adds[target], revenue)
      table.insert(adds[target], customer)
    end
    table.insert(placements, customer)
    table.insert(placements, target .. ':' .. revenue)
  end
end
for index, members in pairs(removes) do redis.call('ZREM', KEYS[2 + index], unpack(members)) end
for index, pairs_ in pairs(adds) do redis.call('ZADD', KEYS[2 + index], unpack(pairs_)) end
for field, by in pairs(deltas) do
  if by ~= 0 then redis.call('HINCRBY', KEYS[1], field, by) end
end
if #placements > 0 then redis.call('HSET', KEYS[2], unpack(placements)) end
return moved
