-- Takes this pod out of a route; tells every pod when the route changed.
-- KEYS[1]  route key (set of pod ids)
-- ARGV[1]  this pod's id
-- ARGV[2]  the channel route changes are announced on
-- Returns 1 when the pod was removed, 0 when it was not there.
local removed = redis.call('SREM', KEYS[1], ARGV[1])
if removed == 1 then
  redis.call('PUBLISH', ARGV[2], KEYS[1])
end
return removed
