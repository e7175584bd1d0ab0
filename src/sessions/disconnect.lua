-- Ends every connection of an identity, wherever it lives (the admin API's kill switch).
-- KEYS[1]  session key (sorted set: member -> lease expiry, ms on the Redis clock)
-- ARGV[1]  kill channel prefix ("session_kill:")
-- ARGV[2]  revocation marker prefix ("session_revoked:")
-- ARGV[3]  lease in ms
-- ARGV[4]  pod heartbeat key prefix ("pod:")
-- Returns how many live connections were told to close: a lapsed lease, or one whose pod has no
-- heartbeat, is no connection (as acquire.lua counts them), and the key goes either way.
-- Each member leaves a marker for one lease: a pod that missed the kill message (its subscriber
-- was reconnecting), or whose renewal was already under way, finds it at its next renewal and
-- closes the connection instead of re-asserting the lease as one Redis lost.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
redis.call('DEL', KEYS[1])
local closed = 0
for _, member in ipairs(members) do
  redis.call('SET', ARGV[2] .. member, 'admin-disconnect', 'PX', ARGV[3])
  local pod, connection = string.match(member, '^[^|]*|(.*)|([^|]*)$')
  if pod ~= nil and redis.call('EXISTS', ARGV[4] .. pod) == 1 then
    redis.call('PUBLISH', ARGV[1] .. pod, connection .. ' admin-disconnect')
    closed = closed + 1
  end
end
return closed
