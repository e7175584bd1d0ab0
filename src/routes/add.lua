-- Names this pod in a route and extends the route's lease; tells every pod when the route changed.
-- KEYS[1]  route key (set of pod ids)
-- ARGV[1]  this pod's id
-- ARGV[2]  lease in ms
-- ARGV[3]  the channel route changes are announced on
-- Returns 1 when the pod was added, 0 when it was already there.
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if added == 1 then
  redis.call('PUBLISH', ARGV[3], KEYS[1])
end
return added
