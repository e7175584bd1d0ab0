-- The live pods of a route; entries naming a pod without a heartbeat are stale and removed.
-- KEYS[1]  route key (set of pod ids)
-- ARGV[1]  pod heartbeat key prefix ("pod:")
-- ARGV[2]  the channel route changes are announced on
-- Returns the pod ids that have a heartbeat.
local live = {}
local removed = 0
for _, pod in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. pod) == 1 then
    live[#live + 1] = pod
  else
    removed = removed + redis.call('SREM', KEYS[1], pod)
  end
end
if removed > 0 then
  redis.call('PUBLISH', ARGV[2], KEYS[1])
end
return live
