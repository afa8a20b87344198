-- Test scenario: a reward that goes up and down (+1, +1, -2, ...), to test reward transforms.
frames = 0
function zigzag_reward()
  frames = frames + 1
  if frames % 3 == 0 then return -2 end
  return 1
end
