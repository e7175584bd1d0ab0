-- The live pods of a route; entries naming a pod without a heartbeat are stale and removed.
-- KEYS[1]  route key (set of pod ids)
-- ARGV[1]  pod heartbeat key prefix ("pod:")
-- Returns the pod ids that have a heartbeat.
local live = {}
for _, pod in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. pod) == 1 then
    live[#live + 1] = pod
  else
    redis.call('SREM', KEYS[1], pod)
  end
end
return live
