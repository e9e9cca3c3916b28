# The api and worker image (docker-compose.yml runs `helpdesk api`, `helpdesk worker`,
# `helpdesk migrate` from it). No secrets inside: every key comes from HELPDESK_* at run time.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin helpdesk \
    && mkdir -p /var/lib/helpdesk \
    && chown helpdesk:helpdesk /var/lib/helpdesk

WORKDIR /app
COPY pyproject.toml README.md ./
COPY helpdesk ./helpdesk
COPY api ./api
COPY models ./models
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
RUN pip install .

USER helpdesk
ENV HELPDESK_VAR_DIR=/var/lib/helpdesk
EXPOSE 8000
ENTRYPOINT ["helpdesk"]
CMD ["api"]
