-- Ends every connection of an identity, wherever it lives (the admin API's kill switch).
-- KEYS[1]  session key (sorted set: member -> lease expiry)
-- ARGV[1]  kill channel prefix ("session_kill:")
-- ARGV[2]  revocation marker prefix ("session_revoked:")
-- ARGV[3]  lease in ms
-- Returns how many connections were told to close.
-- Each member leaves a marker for one lease: a pod that missed the kill message (its subscriber
-- was reconnecting), or whose renewal was already under way, finds it at its next renewal and
-- closes the connection instead of re-asserting the lease as one Redis lost.
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
for _, member in ipairs(members) do
  redis.call('SET', ARGV[2] .. member, 'admin-disconnect', 'PX', ARGV[3])
  local pod, connection = string.match(member, '^[^|]*|(.*)|([^|]*)$')
  if pod ~= nil then
    redis.call('PUBLISH', ARGV[1] .. pod, connection .. ' admin-disconnect')
  end
end
return #members
