-- Extends the leases of a batch of sessions while their connections still hold them, and
-- re-asserts the ones Redis lost. One call renews a few hundred: a call per session made each
-- renewal period cost the pod more memory churn than holding the sessions did.
-- KEYS[i]           session key i (sorted set: member -> lease expiry, ms on the Redis clock)
-- ARGV[i]           the member acquire.lua returned for KEYS[i]
-- ARGV[#KEYS + 1]   lease in ms
-- ARGV[#KEYS + 2]   how many live connections an identity may have (1 = exclusive)
-- ARGV[#KEYS + 3]   revocation marker prefix ("session_revoked:", left by disconnect.lua with
--                   "admin-disconnect" and by acquire.lua with "replaced")
-- Returns, for each key in order: 1 renewed, 2 re-asserted (the member was gone but there is room,
-- e.g. after a restart or FLUSHALL), 0 lost (others hold every place, or a newer connection replaced
-- it: the caller must close it), 3 revoked (an admin disconnected it: the caller must close it).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local count = #KEYS
local expiry = now + tonumber(ARGV[count + 1])
local limit = tonumber(ARGV[count + 2])
local revokedPrefix = ARGV[count + 3]
local statuses = {}
for i = 1, count do
  local key = KEYS[i]
  local member = ARGV[i]
  local status = 1
  if redis.call('ZSCORE', key, member) == false then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local revoked = redis.call('GET', revokedPrefix .. member)
    if revoked == 'admin-disconnect' then
      status = 3
    elseif revoked == 'replaced' or redis.call('ZCARD', key) >= limit then
      status = 0
    else
      status = 2
    end
  end
  if status == 1 or status == 2 then
    redis.call('ZADD', key, expiry, member)
    redis.call('PEXPIREAT', key, tonumber(redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')[2]))
  end
  statuses[i] = status
end
return statuses
