-- Names this pod in a route and extends the route's lease (never shortens it); tells every pod when
-- the route changed.
-- KEYS[1]  route key (set of pod ids)
-- ARGV[1]  this pod's id
-- ARGV[2]  lease in ms
-- ARGV[3]  the channel route changes are announced on
-- Returns 1 when the pod was added, 0 when it was already there.
local added = redis.call('SADD', KEYS[1], ARGV[1])
-- Never shortened: during a rollout that changes LEASE_TTL_MS, a pod with a shorter lease must not
-- cut the lease of pods that renew less often (PEXPIRE's GT flag needs Redis 7).
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if added == 1 then
  redis.call('PUBLISH', ARGV[3], KEYS[1])
end
return added
