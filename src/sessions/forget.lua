-- Removes the lease an acquire left, or is about to leave, when its caller will never use it:
-- the command timed out while Redis was slow, or the pod stopped while the acquire was out. Sent
-- on the same connection after the acquire, it runs after it, so the lease does not hold a place
-- until it expires.
-- KEYS[1]  session key (sorted set: member -> lease expiry)
-- ARGV[1]  the end of the member: "|<pod_id>|<connection_id>"
-- Returns how many leases were removed (0 when the acquire never ran).
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, -#ARGV[1]) == ARGV[1] then
    removed = removed + redis.call('ZREM', KEYS[1], member)
  end
end
return removed
