-- Takes a session for a new connection; the newest connection wins.
-- KEYS[1]  session key (sorted set: member -> lease expiry, ms on the Redis clock)
-- ARGV[1]  this pod's id
-- ARGV[2]  the new connection's id
-- ARGV[3]  lease in ms
-- ARGV[4]  how many live connections the identity may have (1 = exclusive)
-- ARGV[5]  pod heartbeat key prefix ("pod:")
-- ARGV[6]  kill channel prefix ("session_kill:")
-- ARGV[7]  revocation marker prefix ("session_revoked:")
-- Returns { member, evicted... }: the new member ("<acquired_at_ms>|<pod_id>|<connection_id>") and the
-- members it replaced, whose pods were told on their kill channel to close them with 4402. Each
-- replaced member also leaves a marker for one lease: a pod that missed the kill message finds it
-- at its next renewal, and closes the connection rather than re-asserting its lease.
local key = KEYS[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
-- Zero-padded acquisition time first, so text order is age order across pods.
local mine = string.format('%015d', now) .. '|' .. ARGV[1] .. '|' .. ARGV[2]

redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
-- Members whose pod has no heartbeat are dead: drop them rather than count them or wait for them.
for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  local pod = string.match(member, '^[^|]*|(.*)|[^|]*$')
  if pod == nil or redis.call('EXISTS', ARGV[5] .. pod) == 0 then
    redis.call('ZREM', key, member)
  end
end

redis.call('ZADD', key, now + lease, mine)
local result = { mine }
local members = redis.call('ZRANGE', key, 0, -1)
local excess = #members - limit
if excess > 0 then
  table.sort(members)
  for _, member in ipairs(members) do
    if excess == 0 then break end
    if member ~= mine then
      redis.call('ZREM', key, member)
      redis.call('SET', ARGV[7] .. member, 'replaced', 'PX', lease)
      local pod, connection = string.match(member, '^[^|]*|(.*)|([^|]*)$')
      redis.call('PUBLISH', ARGV[6] .. pod, connection .. ' replaced')
      result[#result + 1] = member
      excess = excess - 1
    end
  end
end
redis.call('PEXPIREAT', key, tonumber(redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')[2]))
return result
