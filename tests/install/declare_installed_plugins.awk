# Prints a beaconbox config with every plugin declared that the default config lists
# only as a comment ("# [plugins.<kind>.<name>]" followed by "# path = ...") and whose
# .so is installed under ROOT (-v root=DIR; "" for /). The default config declares only
# the plugins beaconbox Recommends, so that it loads with them alone; the install and
# package tests use this to ask `beaconbox-ctl plugins` for the others' versions too.
{ line[NR] = $0 }
END {
  for (i = 1; i <= NR; i++) {
    if (line[i] ~ /^# \[plugins\.[a-z]+\.[a-z0-9-]+\]$/ &&
        line[i + 1] ~ /^# path = "\/[^"]+\.so"$/) {
      so = line[i + 1]
      sub(/^# path = "/, "", so)
      sub(/"$/, "", so)
      if ((getline probe < (root so)) >= 0) {
        close(root so)
        line[i] = substr(line[i], 3)
        line[i + 1] = substr(line[i + 1], 3)
      }
    }
    print line[i]
  }
}
