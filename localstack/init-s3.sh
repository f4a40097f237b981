#!/bin/sh
# Wait for an S3 endpoint and create a bucket. Works in the compose services
# above (aws-cli image, LocalStack ready hook) and on the host:
#   S3_ENDPOINT=http://127.0.0.1:9000 BUCKET=tierlog AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… sh init-s3.sh
# Without the aws CLI it falls back to a plain PUT (enough for moto).
set -eu
S3_ENDPOINT="${S3_ENDPOINT:-http://localhost:4566}"
BUCKET="${BUCKET:-tierlog}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"

i=0
until curl -s -o /dev/null "$S3_ENDPOINT" 2>/dev/null || aws --endpoint-url "$S3_ENDPOINT" s3 ls >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -gt 60 ] && { echo "init-s3: $S3_ENDPOINT did not answer within 60 s" >&2; exit 1; }
    sleep 1
done

if command -v aws >/dev/null 2>&1; then
    aws --endpoint-url "$S3_ENDPOINT" s3api head-bucket --bucket "$BUCKET" 2>/dev/null \
        || aws --endpoint-url "$S3_ENDPOINT" s3 mb "s3://$BUCKET"
else
    curl -fsS -X PUT "$S3_ENDPOINT/$BUCKET" >/dev/null
fi
echo "init-s3: bucket $BUCKET ready at $S3_ENDPOINT"
