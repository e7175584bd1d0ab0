-- The live pods of a route; entries naming a pod without a heartbeat are stale and removed.
-- A caller whose own heartbeat is gone finds that Redis lost its data (or that it stalled past its
-- lease) and starts a recovery. During one, pods are still re-asserting their heartbeats and
-- routes: nothing is removed, and the caller hears how long the answer may stay incomplete.
-- KEYS[1]  route key (set of pod ids)
-- KEYS[2]  recovery marker ("cluster:recovering")
-- ARGV[1]  pod heartbeat key prefix ("pod:")
-- ARGV[2]  the channel route changes are announced on
-- ARGV[3]  the calling pod's id
-- ARGV[4]  how long a recovery lasts, in ms
-- Returns { the pod ids that have a heartbeat, ms the recovery still lasts (0 when there is none) }.
if redis.call('EXISTS', ARGV[1] .. ARGV[3]) == 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4], 'NX')
end
local recovering = math.max(redis.call('PTTL', KEYS[2]), 0)
local live = {}
local removed = 0
for _, pod in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. pod) == 1 then
    live[#live + 1] = pod
  elseif recovering == 0 then
    removed = removed + redis.call('SREM', KEYS[1], pod)
  end
end
if removed > 0 then
  redis.call('PUBLISH', ARGV[2], KEYS[1])
end
return { live, recovering }
