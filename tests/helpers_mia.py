"""Hand-built membership-inference scores shared by the metric and command-line tests."""

# The hand-built 20-sample case: 10 members, 10 non-members, sorted by score.
#   members:     0.95 0.90 0.85 0.80 | 0.60 0.55 0.50 0.45 0.40 0.35
#   non-members: 0.70 (the single high one) | 0.30 0.25 ... 0.05
# With alpha = 0.1 and 10 non-members, floor(0.1 * 10) = 1 false positive is allowed (<= rule):
# the threshold may go down to 0.35, flagging all 10 members and the one non-member at 0.70,
# so TPR = 1.0 at FPR = 0.1. A strict "<" rule would allow no false positive: TPR = 4/10.
HAND_MEMBERS = [0.95, 0.90, 0.85, 0.80, 0.60, 0.55, 0.50, 0.45, 0.40, 0.35]
HAND_NONMEMBERS = [0.70, 0.30, 0.25, 0.20, 0.18, 0.15, 0.12, 0.10, 0.08, 0.05]
