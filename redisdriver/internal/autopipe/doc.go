// Package autopipe sends the commands of concurrent callers to Redis
// together, as go-redis pipelines that form by themselves under load
// (see [batcher]), each command as one attempt (see [OnceDoer]), and
// orders the commands on a key after those whose callers left before
// their replies came (see [Pipeline.Do]). It knows commands only by
// their arguments: the driver tells it which free a key (see New).
package autopipe
