"""The hierarchical planner's settings (``planners.hierarchical``): each key of a launch file's
``hierarchy:`` section, with why it exists."""

from __future__ import annotations

from dataclasses import dataclass, field

from planners.base import check_float, check_int

EDGE_KINDS = ("learned", "experience")
END_KINDS = ("learned", "nearest")
UNROUTED_KINDS = ("direct", "toward")
EDGE_LENGTHS = ("visits", "rated")


@dataclass
class HierarchyConfig:
    landmarks: int = 256        # subgoal candidates: a farthest-point sample of the agent's latents
    max_edge: float = 10.0      # join landmarks the cost-to-go rates at most this many steps apart
    reach: float = 2.0          # a subgoal within this many steps counts as reached: go to the next
    replan_every: int = 10      # executed actions between two routings (the high level's time scale)
    # what joins landmarks: "learned" (the cost-to-go rates them <= max_edge apart) or "experience"
    # (the agent's episodes went from one to the other within max_edge steps; a visited latent
    # belongs to a landmark within `reach` steps of it both ways): see planners.landmarks
    edges: str = "learned"
    reversible: bool = False    # experience edges also join in reverse (motions that can be undone)
    # an experience edge's length: "visits", the fewest steps the agent took from a visit of one landmark to
    # one of the other (two neighbouring landmarks' visits meet at their border: 1 step, however far apart
    # the landmarks are); "rated", no less than the cost-to-go's rating of the two landmarks (both ways,
    # if reversible). With "visits" an OGBench giant agent's route to a landmark 6 steps away went round a
    # 5-hop loop of 1-2 step edges, and back, for 500 steps (BENCHMARKS.md)
    edge_length: str = "visits"
    # experience edges: how many visited observations (whole episodes at random) the landmarks and
    # edges are read from; a 40k-step 4x4 replay read at 20k left landmarks on 83 of its 124 cells
    experience_steps: int = 20_000
    # > 0: landmarks are spread, counted (frontier) and matched to visits in the place_dims slowest
    # directions of the visited latents (where the agent is, not how fast it moves: slow_features);
    # 0: in the whole latent. Needs the visits in time order: experience edges.
    place_dims: int = 0
    # > 0: give up a subgoal that the cost-to-go has not seen come 1 step nearer in this many calls
    # (not entered again until the goal changes or the episode ends); 0: never give up
    stuck_steps: int = 0
    # where the current latent and the goal join the graph (experience edges): "learned", at every
    # landmark the cost-to-go rates within `reach`; "nearest", at the nearest landmark in the key
    # (place_dims, else the latent) as visited latents are labelled, and a subgoal counts as passed
    # once the agent is at it or at a later landmark of the route (LandmarkGraph.locate)
    ends: str = "learned"
    # the switching rule's threshold: a leading subgoal the cost-to-go puts within this many steps is
    # passed; None: `reach`. The cost-to-go does not see every wall: with `reach: 8` a 4x4 agent
    # passed the landmark in a door and pressed for 950 steps toward the next one, across the wall
    # beside it. 0 (with ends: nearest) passes a subgoal only once the agent is at it (locate). 3, with the
    # position term goal:agent_xy at weight 3: a 4x4 agent 38/40 against 23/40 (BENCHMARKS.md, stop 66);
    # a second training seed 27/40 with both (stop 67)
    pass_within: float | None = None
    # the goal itself within this many steps (the cost-to-go's rating): head for it, whatever the route says;
    # None: the route decides. At its goal a 4x4 agent was located at one landmark and the goal at another, and
    # the route led it off the goal to that landmark (0.2 -> 0.7 m) and back, until the episode ended just out
    # of the goal's radius. 3 on two 4x4 seeds: 92 / 120 against 93 / 120 (6 gained, 7 lost): the ball drifts
    # off its goal without a route too; off in the launch files (BENCHMARKS.md, "goal_within", stop 71)
    goal_within: float | None = None
    # with ends: nearest, where the agent is at no landmark (between two, or pressed against a wall out of
    # its landmark's range), count it at the last landmark it was at this episode, for routing and passing.
    # False: join the graph wherever the cost-to-go rates a landmark near, which a smooth cost-to-go does
    # through walls (an OGBench giant agent 7 m from its goal flipped for 550 steps between a route round
    # the wall and one across it, as it came in and out of its landmark's range: BENCHMARKS.md)
    keep_place: bool = False
    # when no route joins the agent to the goal (their parts of the graph are apart, or the goal is
    # near no landmark): "direct", head for the goal (flat MPC from there); "toward", first follow the
    # graph to the landmark it can reach that the cost-to-go puts nearest the goal, then head for it
    unrouted: str = "direct"
    # > 0: when the route's length to the goal (the high level's own estimate, in steps) has not fallen by a
    # step in this many calls, tumble: hold a random full-force direction for `tumble_steps` calls, then plan
    # afresh without the low level's warm start (skipped where the constraint rules the tumble out). Against a
    # door's frame a 4x4 agent's model predicted the ball through the wall and the way through the door as
    # no better, and it pressed there for 550 steps (BENCHMARKS.md, "tumble_after"). 0: never.
    tumble_after: int = 0
    tumble_steps: int = 15
    # cost terms that score the goal itself only: off while the low level aims at a subgoal of the route, on
    # once it heads for the goal. A readout's distance (`goal:agent_xy`, metres) is a straight line; toward a
    # subgoal round a corner it may pull into the wall, where the learned latent distance goes round it. 2x2 rooms from
    # pixels: 69% / 90% against 72% / 89% without (BENCHMARKS.md, "goal_only_terms"): off in the launch files
    goal_only_terms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.edges not in EDGE_KINDS:
            raise ValueError(f"edges must be one of {EDGE_KINDS}, got {self.edges!r}")
        if not isinstance(self.reversible, bool):
            raise ValueError(f"reversible must be true or false, got {self.reversible!r}")
        check_int("landmarks", self.landmarks, 2)
        check_float("max_edge", self.max_edge, 0.0, low_open=True)
        check_float("reach", self.reach, 0.0)
        check_int("replan_every", self.replan_every, 1)
        check_int("experience_steps", self.experience_steps, 1)
        check_int("place_dims", self.place_dims, 0)
        check_int("stuck_steps", self.stuck_steps, 0)
        check_int("tumble_after", self.tumble_after, 0)
        check_int("tumble_steps", self.tumble_steps, 1)
        if not isinstance(self.goal_only_terms, (list, tuple)) or not all(
                isinstance(t, str) for t in self.goal_only_terms):
            raise ValueError(f"goal_only_terms must be a list of cost term names, got {self.goal_only_terms!r}")
        if not isinstance(self.keep_place, bool):
            raise ValueError(f"keep_place must be true or false, got {self.keep_place!r}")
        if self.pass_within is not None:
            check_float("pass_within", self.pass_within, 0.0)
        if self.goal_within is not None:
            check_float("goal_within", self.goal_within, 0.0)
        if self.edge_length not in EDGE_LENGTHS:
            raise ValueError(f"edge_length must be one of {EDGE_LENGTHS}, got {self.edge_length!r}")
        if self.edge_length != "visits" and self.edges != "experience":
            raise ValueError("edge_length sets the length of experience edges: it needs edges: experience")
        if self.ends not in END_KINDS:
            raise ValueError(f"ends must be one of {END_KINDS}, got {self.ends!r}")
        if self.unrouted not in UNROUTED_KINDS:
            raise ValueError(f"unrouted must be one of {UNROUTED_KINDS}, got {self.unrouted!r}")
        if self.ends == "nearest" and self.edges != "experience":
            raise ValueError("ends: nearest joins a latent to a landmark as experience edges label visits: "
                             "it needs edges: experience")
        if self.keep_place and self.ends != "nearest":
            raise ValueError("keep_place holds the landmark that ends: nearest located the agent at: it needs "
                             "ends: nearest")
        if self.place_dims and self.edges != "experience":
            raise ValueError("place_dims reads the slow directions off the agent's steps in time order: "
                             "it needs edges: experience")
