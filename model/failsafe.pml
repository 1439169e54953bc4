/*
 * The lease protocol with failsafe promises, for two nodes: the model that spin checks
 * (npm run model; model/README.md maps it to the code).
 *
 * Time is a Clock process that ticks; every duration is a countdown it decrements, and every
 * message in flight has an age it increments. Clock drift is in the durations: each is chosen,
 * when it is set, anywhere between the shortest and the longest real time that a clock running
 * within the drift bound can take for it. An active node at its deadline must stop before the
 * clock ticks again (its agent, or its watchdog, stops it there: the safety margin pays for it).
 *
 * Faults, from the Env process: either node's path to the arbiter and the peer channel go down
 * and up; messages are lost (a slot emptied) and overtaken (the channels are independent);
 * node 0, the first active, crashes for good; node 1's agent restarts (losing its memory of
 * promises, but not its epoch memory, which is on disk); any process may be paused (not
 * scheduled) for any time. After at most FAULTS faults, or whenever Env chooses, the world heals.
 *
 * Planted bugs, one at a time with -D: BUG_FORGET_PROMISE (a restarted agent does not keep out
 * of the lease for a promise window), BUG_EXTEND_PAST_PROMISE (the active counts its extension
 * from the answer's arrival, not from the request's sending), BUG_GRANT_VOUCHING (the arbiter
 * grants a node that says it vouches), BUG_RELEASE_LATER_PROMISE (a release also drops a promise that a
request sent after it extended), BUG_PROMISE_UNRECORDED (a promise for an epoch not seen before is
given without recording it, so a restarted node believes it has acted under the latest epoch).
 */

#define WIN_MIN 2   /* the holder's window, leaseTtl(1-d) - margin on its clock: shortest real time */
#define WIN_MAX 3   /* ... and longest */
#define PROM_MIN 4  /* a promise, leaseTtl on the promiser's clock: shortest real time */
#define PROM_MAX 5  /* ... and longest */
#define ARB 4       /* the arbiter grants a lease quiet for longer than this (ttl + skew, shortest real time) */
#define AGE_CAP 4   /* an age of WIN_MAX or more extends nothing */
#ifndef FAULTS
#define FAULTS 3
#endif
#define MAXEPOCH 4

mtype = { PASSIVE, ACTIVE };

/* The arbiter and its store: one conditional write at a time (a step is atomic). */
byte holder = 0;
byte epoch = 1;
byte quiet = 0;            /* how long the arbiter has seen the lease unchanged, on its clock */

/* The nodes. Node 0 starts as the holder of epoch 1, fencing confirmed; node 1 passive. */
mtype role[2];
byte nodeEpoch[2];
byte deadline[2];          /* time left to act as holder */
byte promise[2];           /* time left on the promise this node gave its peer */
byte seen[2];              /* epoch memory: the highest epoch it has seen granted, or promised for */
byte acted1 = 0;           /* epoch memory: the highest epoch node 1 has acted under */
bool alive[2];

/* The network. */
bool cpUp[2];
bool peerUp = true;
/* The peer channel: a request and an answer in flight; a newer one replaces an older one (lost). */
bool reqPending;  byte reqFrom; byte reqEpoch; byte reqAge;
bool ansPending;  byte ansTo;   byte ansEpoch; byte ansAge;   /* ansAge: since the request was sent */
/* A release in flight: after a committed renewal the holder relies on no promise asked for
   before it, and says so (its status names the last request it covers); the peer drops a promise
   no later request extended. reqOld: the request in flight was sent before the latest release;
   promFresh[i]: a request sent after the latest release extended node i's promise. */
bool relPending;  byte relFrom;  bool reqOld;  bool promFresh[2];
/* The arbiter's answer granting node i the lease, in flight; grantAge: since the heartbeat was sent. */
bool grantPending[2]; byte grantEpoch[2]; byte grantAge[2];

byte faults = 0;
bool faultsOver = false;
bool crashed0 = false;

#define inc(x) if :: x < AGE_CAP -> x++ :: else -> skip fi
#define dec(x) if :: x > 0 -> x-- :: else -> skip fi
#define serving(i) (alive[i] && role[i] == ACTIVE)
#ifdef BUG_GRANT_VOUCHING
#define HEEDS_VOUCHING(i) true
#else
#define HEEDS_VOUCHING(i) (promise[i] == 0)
#endif

proctype Clock() {
  do
  :: atomic {
       !(serving(0) && deadline[0] == 0) && !(serving(1) && deadline[1] == 0) &&
       /* once the world has healed, an answer is delivered within a tick (a request times out well inside a lease) */
       !(faultsOver && ((alive[0] && grantPending[0] && grantAge[0] > 0) || (alive[1] && grantPending[1] && grantAge[1] > 0))) ->
       dec(deadline[0]); dec(deadline[1]); dec(promise[0]); dec(promise[1]);
       if :: quiet <= ARB -> quiet++ :: else -> skip fi;
       inc(reqAge); inc(ansAge); inc(grantAge[0]); inc(grantAge[1])
     }
  od
}

proctype Node(byte i) {
  byte j = 1 - i;
  byte w;
  do
  /* At the deadline: stop (demote). */
  :: atomic { serving(i) && deadline[i] == 0 -> role[i] = PASSIVE }

  /* The holder's heartbeat: a committed renewal of its epoch extends the deadline; an answer
     about the lease (another holder, another epoch) demotes it. Sent and decided at once: the
     arbiter's quiet time starts no later than the holder's deadline does. */
  :: atomic {
       serving(i) && cpUp[i] ->
       if
       :: holder == i && epoch == nodeEpoch[i] ->
            quiet = 0;
            select(w : WIN_MIN .. WIN_MAX);
            if :: w > deadline[i] -> deadline[i] = w :: else -> skip fi;
            /* (with no promise running and no request in flight, a release would change nothing) */
            if :: promise[j] > 0 || reqPending -> relPending = true; relFrom = i; reqOld = reqPending; promFresh[j] = false :: else -> skip fi
       :: else -> role[i] = PASSIVE
       fi
     }

  /* The active asks its peer to vouch when its renewal gets no answer. */
  :: atomic { serving(i) && !cpUp[i] && peerUp && !reqPending -> reqPending = true; reqFrom = i; reqEpoch = nodeEpoch[i]; reqAge = 0; reqOld = false }

  /* The answer arrives: the deadline extends from the moment the request was sent. */
  :: atomic {
       alive[i] && ansPending && ansTo == i && peerUp ->
       ansPending = false;
       if
       :: serving(i) && nodeEpoch[i] == ansEpoch && deadline[i] > 0 ->
            select(w : WIN_MIN .. WIN_MAX);
#ifdef BUG_EXTEND_PAST_PROMISE
            if :: w > deadline[i] -> deadline[i] = w :: else -> skip fi
#else
            if :: w > ansAge && w - ansAge > deadline[i] -> deadline[i] = w - ansAge :: else -> skip fi
#endif
       :: else -> skip
       fi
     }

  /* A request reaches the passive: it promises only if it runs nothing and the epoch is current
     as far as it knows. It does not know of a grant still in flight to it: it will not act on one
     while the promise runs. A refusal is as good as no answer. */
  :: atomic {
       alive[i] && reqPending && reqFrom == j && peerUp ->
       reqPending = false;
       if
       :: role[i] == PASSIVE && reqEpoch >= seen[i] ->
#ifndef BUG_PROMISE_UNRECORDED
            seen[i] = reqEpoch;                  /* on disk before the answer */
#endif
            select(w : PROM_MIN .. PROM_MAX);
            if :: w > promise[i] -> promise[i] = w :: else -> skip fi;
            if :: !reqOld -> promFresh[i] = true :: else -> skip fi;
            ansPending = true; ansTo = j; ansEpoch = reqEpoch; ansAge = reqAge
       :: else -> skip
       fi
     }

  /* The release reaches the peer: it drops its promise unless a later request extended it. */
  :: atomic {
       alive[i] && relPending && relFrom == j && peerUp ->
       relPending = false;
#ifdef BUG_RELEASE_LATER_PROMISE
       promise[i] = 0
#else
       if :: !promFresh[i] -> promise[i] = 0 :: else -> skip fi
#endif
     }

  /* The passive's heartbeat, with the arbiter's decision. It says whether it vouches; the
     arbiter grants a lapsed lease (or renews one it holds already) only to a node that does not. */
  :: atomic {
       alive[i] && role[i] == PASSIVE && cpUp[i] && !grantPending[i] && HEEDS_VOUCHING(i) && (holder == i || (quiet > ARB && epoch < MAXEPOCH)) ->
       assert(promise[i] == 0);   /* never a grant to a node while its promise runs */
       if :: holder != i -> epoch++; holder = i :: else -> skip fi;
       quiet = 0;
       grantPending[i] = true; grantEpoch[i] = epoch; grantAge[i] = 0
     }

  /* The grant arrives. Not acted on while a promise runs; otherwise the node fences its peer,
     reports it (the arbiter confirms only for the current holder and epoch) and activates, its
     deadline running from the heartbeat's sending. */
  :: atomic {
       alive[i] && grantPending[i] ->
       grantPending[i] = false;
       if :: grantEpoch[i] > seen[i] -> seen[i] = grantEpoch[i] :: else -> skip fi;
       select(w : WIN_MIN .. WIN_MAX);
       if
       :: role[i] == PASSIVE && promise[i] == 0 && cpUp[i] && holder == i && epoch == grantEpoch[i] && w > grantAge[i] ->
            assert(!serving(j));                 /* never two nodes serving (fencing then takes the peer's key) */
            role[i] = ACTIVE; nodeEpoch[i] = grantEpoch[i]; deadline[i] = w - grantAge[i];
            if :: i == 1 -> acted1 = grantEpoch[i] :: else -> skip fi
       :: else -> skip
       fi
     }
  od
}

proctype Env() {
  byte p;
  do
  :: atomic { !faultsOver && faults < FAULTS -> faults++; cpUp[0] = !cpUp[0] }
  :: atomic { !faultsOver && faults < FAULTS -> faults++; cpUp[1] = !cpUp[1] }
  :: atomic { !faultsOver && faults < FAULTS -> faults++; peerUp = !peerUp }
  :: atomic { !faultsOver && faults < FAULTS && (reqPending || ansPending || relPending) -> faults++; reqPending = false; ansPending = false; relPending = false }
  /* Node 0 loses power for good: what it ran, and what it promised, end with it. */
  :: atomic {
       !faultsOver && faults < FAULTS && !crashed0 ->
       faults++; crashed0 = true; alive[0] = false; role[0] = PASSIVE; deadline[0] = 0; promise[0] = 0; grantPending[0] = false
     }
  /* Node 1's agent restarts: it forgets its promises and any answer in flight, keeps its epoch
     memory; it runs nothing (a node that ran something gave no promise that still runs). It
     keeps out for one promise window unless it acted under the highest epoch it has seen
     (mayHavePromised). */
  :: atomic {
       !faultsOver && faults < FAULTS && role[1] == PASSIVE && alive[1] ->
       faults++; grantPending[1] = false;
#ifdef BUG_FORGET_PROMISE
       promise[1] = 0
#else
       if
       :: acted1 == 0 || seen[1] > acted1 ->
            select(p : PROM_MIN .. PROM_MAX);   /* (a later release may end it: a harder test than the code, which never releases it) */
            promise[1] = p; promFresh[1] = true
       :: else -> promise[1] = 0
       fi
#endif
     }
  /* The world heals: both paths to the arbiter and the peer channel up, no more faults. */
  :: atomic { !faultsOver -> faultsOver = true; cpUp[0] = true; cpUp[1] = true; peerUp = true }
  od
}

init {
  atomic {
    role[0] = ACTIVE; nodeEpoch[0] = 1; deadline[0] = WIN_MAX; seen[0] = 1; alive[0] = true;
    role[1] = PASSIVE; seen[1] = 1; alive[1] = true;
    cpUp[0] = true; cpUp[1] = true;
    run Clock(); run Node(0); run Node(1); run Env()
  }
}

/* Liveness: once node 0 has crashed and the world has healed, node 1 serves in the end. */
ltl replaced { [] ((crashed0 && faultsOver) -> <> serving(1)) }
