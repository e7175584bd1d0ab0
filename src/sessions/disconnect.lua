-- Ends every connection of an identity, wherever it lives (the admin API's kill switch).
-- KEYS[1]  session key (sorted set: member -> lease expiry)
-- ARGV[1]  kill channel prefix ("session_kill:")
-- Returns how many connections were told to close.
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
for _, member in ipairs(members) do
  local pod, connection = string.match(member, '^[^|]*|(.*)|([^|]*)$')
  if pod ~= nil then
    redis.call('PUBLISH', ARGV[1] .. pod, connection .. ' admin-disconnect')
  end
end
return #members
