-- Test scenario: the reward script raises on the 4th frame, so a worker fails mid-run.
frames = 0
function boom_reward()
  frames = frames + 1
  if frames > 3 then error("boom at frame " .. frames) end
  return 0
end
