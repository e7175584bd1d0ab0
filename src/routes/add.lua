-- Names this pod in a route and extends the route's lease.
-- KEYS[1]  route key (set of pod ids)
-- ARGV[1]  this pod's id
-- ARGV[2]  lease in ms
-- Returns 1 when the pod was added, 0 when it was already there.
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return added
