"""fastretro inside other frameworks: Stable-Baselines3 (:mod:`.sb3`) and Ray (:mod:`.ray`)."""
